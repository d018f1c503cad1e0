"""What dbt puts in a model's Jinja context, for sqlfluff's jinja templater (.sqlfluff).

sqlfluff's dbt_builtins give ref, source, config, this and is_incremental; this
package adds the rest the models and macros call, so that every file renders to
the SQL DuckDB would run: the project's vars read from dbt_project.yml, the
project's own macros under their package name (``ottp.flag``), dbt's
cross-database macros (``dbt.type_string``), adapter.dispatch to the DuckDB
implementation, and a DuckDB target. Nothing here touches a database: execute
is false and introspection (get_relation, get_columns_in_relation) finds nothing.
"""

from pathlib import Path
from typing import Any

import jinja2
import yaml
from sqlfluff.core.templaters.builtins.dbt import MacroReturn

_PROJECT_VARS: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "dbt_project.yml").read_text()
)["vars"]


class _Var:
    """dbt's var(): the project's vars, with var.has_var()."""

    def __call__(self, name: str, default: Any = None) -> Any:
        return _PROJECT_VARS.get(name, default)

    def has_var(self, name: str) -> bool:
        return name in _PROJECT_VARS


class _MacroNamespace:
    """A package's macros by attribute (``ottp.flag(...)``), looked up in the
    calling template's context, where sqlfluff loaded them."""

    def __getattr__(self, name: str) -> Any:
        @jinja2.pass_context
        def call_macro(context: jinja2.runtime.Context, *args: Any, **kwargs: Any) -> Any:
            try:
                return context.resolve_or_missing(name)(*args, **kwargs)
            except MacroReturn as returned:
                # a macro of the caller's own file, called directly: dbt's return()
                return returned.value

        return call_macro


class _Dbt:
    """dbt's cross-database macros as DuckDB spells them."""

    def type_string(self) -> str:
        return "varchar"

    def type_timestamp(self) -> str:
        return "timestamp"

    def type_boolean(self) -> str:
        return "boolean"

    def type_int(self) -> str:
        return "integer"

    def type_bigint(self) -> str:
        return "bigint"

    def type_float(self) -> str:
        return "float"

    def concat(self, fields: list[str]) -> str:
        return " || ".join(fields)

    def hash(self, field: str) -> str:
        return f"md5(cast({field} as varchar))"

    def listagg(
        self, measure: str, delimiter_text: str = "','", order_by_clause: str = "", limit_num=None
    ) -> str:
        return f"string_agg({measure}, {delimiter_text} {order_by_clause})"

    def datediff(self, first_date: str, second_date: str, datepart: str) -> str:
        return f"date_diff('{datepart}', {first_date}, {second_date})"

    def dateadd(self, datepart: str, interval: Any, from_date_or_timestamp: str) -> str:
        return f"date_add({from_date_or_timestamp}, interval ({interval}) {datepart})"

    def date_trunc(self, datepart: str, date: str) -> str:
        return f"date_trunc('{datepart}', {date})"


class _Adapter:
    """adapter.dispatch picks the duckdb__ macro, else the default__ one."""

    @jinja2.pass_context
    def dispatch(
        self, context: jinja2.runtime.Context, macro_name: str, macro_namespace: str = ""
    ) -> Any:
        for prefix in ("duckdb__", "default__"):
            macro = context.resolve_or_missing(prefix + macro_name)
            if macro is not jinja2.utils.missing:
                return macro
        raise KeyError(f"no duckdb__ or default__ implementation of {macro_name}")

    def get_relation(self, database: Any = None, schema: Any = None, identifier: Any = None):
        return None

    def get_columns_in_relation(self, relation: Any) -> list:
        return []


class _Target:
    type = "duckdb"
    name = "duckdb"
    database = "warehouse"
    schema = "main"


class _Exceptions:
    def raise_compiler_error(self, message: str) -> None:
        raise jinja2.TemplateRuntimeError(message)


class _Model:
    """The calling model: no yml columns known here (macros/row_hash.sql hashes none)."""

    columns: dict[str, Any] = {}


var = _Var()
model = _Model()
ottp = _MacroNamespace()
dbt = _Dbt()
adapter = _Adapter()
target = _Target()
exceptions = _Exceptions()
execute = False


def env_var(name: str, default: str = "") -> str:
    return default

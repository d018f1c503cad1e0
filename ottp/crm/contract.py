"""The CRM export contract: what may leave the warehouse, written once.

Every export table the CRM receives, with its columns (in order), types,
nullability, key and row rules (``TABLES``), and the value sets the quality
gates accept (``LIFECYCLE_STAGES`` ...). The dbt export models declare the
same columns and types in an enforced dbt contract
(``dbt_project/models/exports/_exports__models.yml``), and
``tests/crm/test_contract_columns.py`` checks that the two agree, value sets
included. Every table's last column is ``_row_hash``, the 64-bit hash of the
row's other columns that the export models compute (``row_hash_sql`` is the
expression, in DuckDB's SQL) and the sync compares to find changed rows. The
sync stages and creates target tables from this module; identifiers used in SQL
are validated here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXPORT_SCHEMA = "exports"
# The last column of every export table: a hash of the row's other columns
# (row_hash_sql), computed by the export models, compared by the sync.
ROW_HASH = "_row_hash"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Column types of the contract -> (DuckDB cast, SQLite type, PostgreSQL type). The
# export models cast every column to these types (dbt data_type in the exports yml).
SQL_TYPES = {
    "text": ("varchar", "text", "text"),
    "integer": ("bigint", "integer", "bigint"),
    "double": ("double", "real", "double precision"),
    "boolean": ("boolean", "integer", "boolean"),
    "timestamp": ("timestamp", "text", "timestamp"),
}
DUCKDB, SQLITE, POSTGRESQL = 0, 1, 2

# Value sets the quality gates accept; the export models' accepted_values tests
# list the same values (checked by tests/crm/test_contract_columns.py).
LIFECYCLE_STAGES = ["new", "active", "at_risk", "churned", "reactivated"]
SEGMENTS = ["hardcore_fan", "fan", "casual", "non_viewer"]
SUBSCRIPTION_STATUSES = ["active", "cancelled", "none"]
RISK_BANDS = ["low", "medium", "high"]
SCENARIOS = [
    "became_fan",
    "became_hardcore_fan",
    "abandoned_title",
    "new_episode",
    "at_risk",
    "cancelled",
]
SUBJECT_TYPES = ["category", "title", "inactivity", "cancellation"]
# Export column -> the values it may hold.
ACCEPTED_VALUES = {
    ("crm_contacts", "lifecycle_stage"): LIFECYCLE_STAGES,
    ("crm_contacts", "subscription_status"): SUBSCRIPTION_STATUSES,
    ("crm_contacts", "highest_segment"): SEGMENTS,
    ("crm_contacts", "churn_risk_band"): RISK_BANDS,
    ("crm_triggers", "scenario"): SCENARIOS,
    ("crm_triggers", "subject_type"): SUBJECT_TYPES,
}


def identifier(name: str) -> str:
    """``name`` if it is a plain lowercase SQL identifier, else ValueError."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain lowercase SQL identifier: {name!r}")
    return name


def quote(name: str) -> str:
    """``name`` validated and double-quoted, ready for SQL."""
    return f'"{identifier(name)}"'


@dataclass(frozen=True)
class Column:
    """One export column; its type is one of ``SQL_TYPES``."""

    name: str
    type: str
    nullable: bool = True

    def __post_init__(self) -> None:
        identifier(self.name)
        if self.type not in SQL_TYPES:
            raise ValueError(f"unknown column type {self.type!r}")

    def sql_type(self, dialect: int) -> str:
        """This column's type in ``dialect`` (DUCKDB, SQLITE or POSTGRESQL)."""
        return SQL_TYPES[self.type][dialect]


@dataclass(frozen=True)
class Rule:
    """A row-level constraint: a DuckDB boolean over the row's columns that must hold.

    The same rule is declared as a CHECK constraint in the target.
    """

    name: str
    condition: str
    reason: str

    def check_sql(self) -> str:
        """The rule as a CHECK constraint body (the same SQL in every dialect here)."""
        # Rules are written in this module over contract columns: no data involved.
        return f"({self.condition})"


@dataclass(frozen=True)
class TableSpec:
    """One export table and the CRM table it is mirrored to (same name)."""

    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        identifier(self.name)
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names) or not set(self.key) <= set(names):
            raise ValueError(f"{self.name}: bad column list or key")
        if names[-1] != ROW_HASH or self.columns[-1] != Column(ROW_HASH, "integer", False):
            raise ValueError(f"{self.name}: the last column must be {ROW_HASH} integer not null")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def value_columns(self) -> list[str]:
        """The columns an update sets: all but the key (the row hash included)."""
        return [c.name for c in self.columns if c.name not in self.key]

    @property
    def hashed_columns(self) -> tuple[Column, ...]:
        """The columns the row hash covers: every one but the hash, in contract order."""
        return self.columns[:-1]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _cols(*specs: str) -> tuple[Column, ...]:
    """'name:type' or 'name:type!' (not null)."""
    out = []
    for spec in specs:
        name, type_ = spec.split(":")
        out.append(Column(name, type_.rstrip("!"), nullable=not type_.endswith("!")))
    return tuple(out)


def row_hash_sql(spec: TableSpec) -> str:
    """The DuckDB expression of ``spec``'s row hash, over its columns in contract order.

    ``hash(v1, v1 is null, v2, v2 is null, ...)`` shifted into a signed bigint
    (63 bits): DuckDB hashes each value and combines the hashes by position, so
    moving text between columns changes the hash; each value is followed by
    whether it is null, so a null never hashes like a value. Text is hashed as
    the sync sends it, empty text as null: '' and null are one value to the
    CRM, 'NULL' is a text. The export models compute the same expression
    (``tests/crm/test_contract_columns.py`` compares the compiled SQL).
    """
    values = [
        f"nullif({identifier(c.name)}, '')" if c.type == "text" else identifier(c.name)
        for c in spec.hashed_columns
    ]
    return f"cast(hash({', '.join(f'{v}, {v} is null' for v in values)}) >> 1 as bigint)"


_RANK_RULE = Rule("rank_positive", "rank >= 1", "rank must be 1 or more")

# The export contract: what may leave the warehouse. The dbt models in
# models/exports/ have exactly these columns (tests/crm/test_contract_columns.py).
TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "crm_contacts",
        key=("user_id",),
        columns=_cols(
            "user_id:text!",
            "lifecycle_stage:text!",
            "subscription_status:text",
            "highest_segment:text!",
            "fan_categories:text",
            "hardcore_fan_categories:text",
            "top_category:text",
            "top_categories:text",
            "taste_cluster_id:integer",
            "taste_cluster_name:text",
            "churn_risk:double",
            "churn_risk_band:text",
            "favourite_title_id:text",
            "favourite_title_name:text",
            "titles_watched:integer!",
            "valid_play_count:integer!",
            "fan_category_count:integer!",
            "hardcore_fan_category_count:integer!",
            "recommendation_count:integer!",
            "pauses_per_hour_watched:double",
            "signed_up_at:timestamp",
            "last_active_at:timestamp",
            "_row_hash:integer!",
        ),
        rules=(Rule("churn_risk_share", "churn_risk between 0 and 1", "churn_risk outside 0..1"),),
    ),
    TableSpec(
        "crm_recommendations",
        key=("user_id", "rank"),
        columns=_cols(
            "user_id:text!",
            "rank:integer!",
            "title_id:text!",
            "title_name:text",
            "score:double",
            "reason:text",
            "reason_title_id:text",
            "_row_hash:integer!",
        ),
        rules=(_RANK_RULE,),
    ),
    TableSpec(
        "crm_similar_titles",
        key=("title_id", "rank"),
        columns=_cols(
            "title_id:text!",
            "rank:integer!",
            "similar_title_id:text!",
            "similar_title_name:text",
            "score:double",
            "_row_hash:integer!",
        ),
        rules=(_RANK_RULE,),
    ),
    TableSpec(
        "crm_triggers",
        key=("trigger_id",),
        columns=_cols(
            "trigger_id:text!",
            "user_id:text!",
            "scenario:text!",
            "subject_type:text!",
            "subject_id:text!",
            "subject_name:text",
            "category:text",
            "cancel_reason:text",
            "cancel_reason_description:text",
            "is_cancel_reason_addressable:boolean",
            "occurred_at:timestamp!",
            "fired_at:timestamp!",
            "_row_hash:integer!",
        ),
    ),
)
TABLES_BY_NAME = {t.name: t for t in TABLES}

"""The Segment/RudderStack mapping compiled into one DuckDB select (export files).

:func:`mapped_select` turns a loaded mapping (``ottp.contract.segment``: the
object the collector uses, so ``OTTP_SEGMENT_MAPPING`` applies to both) into a
select over rows ``(seq, line)`` of export lines that gives, for each line,
what ``segment.map_stored_message`` gives (``segment_files.map_lines``'s
output): the contract line (``line``), or ``reason_code`` and ``reason`` (a
skipped call is ``no_contract_event``), with the same texts, checks in the
same order, the same clock-skew correction and the same uuid5 event ids.

A few lines have no exact SQL answer; the select flags them ``python`` and the
loader maps those (and only those) with the Python mapping:

- a JSON object holding the same key twice on a path the mapping reads (DuckDB
  reads the first, Python the last), and a value the mapping copies that is an
  object or an array holding one (it might hold a key twice);
- a timestamp that matches the RFC 3339 pattern but that DuckDB and Python may
  parse differently (lower-case ``t``/``z``, hour 24, second 60, more than six
  fraction digits, a trailing newline, a date DuckDB refuses), or a time (the
  receipt or the corrected one) outside the years 1000 to 9998;
- a call type or an unmapped track name that is not plain printable ASCII
  without ``'`` or ``\\`` (Python's ``repr`` quotes it in the reason);
- a copied number Python and DuckDB may read differently (16 digits in a row
  or a 3-digit exponent); lines Python may not read: a comma before ``}`` or
  ``]`` (DuckDB accepts it), an integer over 4,300 digits, lines nested deep
  enough to meet Python's recursion limit.

The contract line holds the same JSON values as the Python one (numbers and
strings as DuckDB re-writes them, which the validation query reads alike); its
text may differ in spacing and number spelling.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ottp.contract import rules, segment

_DATE_TIME = "^" + rules.DATE_TIME_PATTERN + "\n?$"  # Python's $ also matches before a final \n
# What both parsers read alike: upper-case T and Z, hours 0-23, seconds 0-59, <= 6 fraction digits
_SAFE_TIME = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_UUID = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\n?$"
_COUNTRY = "^[A-Z]{2}\n?$"
_PLAIN_ASCII = "^[ -&(-\\[\\]-~]*$"  # printable ASCII without ' and \
_ODD_NUMBER = r"[0-9]{16}|[eE][+-]?[0-9]{3}"  # in a copied value
_TRAILING_COMMA = r",[ \t]*[\]}]"  # DuckDB reads it, Python does not
_MAX_INT_DIGITS = 4300  # Python's limit on an int's digits (lines with 1,000 in a row: Python)
_DEEP = 400  # openers from which Python's recursion limit may be near
# Root fields the mapping reads but never copies into the event
_NOT_COPIED = frozenset(
    (k,) for k in ("type", "event", "messageId", "receivedAt", "originalTimestamp", "timestamp",
                   "sentAt")
)  # fmt: skip
_MIN_US = "epoch_us(timestamptz '1000-01-02 00:00:00+00')"
_MAX_US = "epoch_us(timestamptz '9998-12-30 00:00:00+00')"


def _lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _json_lit(value: object) -> str:
    """The JSON text of a Python value, as a SQL literal."""
    return _lit(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _json_path(steps: tuple[str, ...]) -> str:
    quoted = (step.replace("\\", "\\\\").replace('"', '\\"') for step in steps)
    return "$" + "".join(f'."{step}"' for step in quoted)


def _present(p: str) -> str:
    """Python's ``value is not None and value != ''`` on a JSON text (null when absent)."""
    return f"coalesce({p} not in ('null', '\"\"'), false)"


def _not_null(p: str) -> str:
    """Python's ``value is not None`` (absent and JSON null are None)."""
    return f"coalesce({p} <> 'null', false)"


def _is_str(p: str) -> str:
    return f"coalesce(left({p}, 1) = '\"', false)"


def _stamp(us: str) -> str:
    """RFC 3339 UTC with milliseconds (truncated) and Z, as a JSON string."""
    return f"to_json(strftime(make_timestamp({us}), '%Y-%m-%dT%H:%M:%S.%g') || 'Z')"


class _Columns:
    """The select's columns, computed once per line, stage by stage (a stage reads earlier ones).

    Stage 0: ``p<i>``, the JSON text at each path the mapping reads (null when
    absent), from one ``json_extract`` per line, and ``sv``, the strings at the
    paths read as strings (one ``json_extract_string``); later stages: named
    expressions over them.
    """

    def __init__(self) -> None:
        self.paths: list[tuple[str, ...]] = []
        self.string_paths: list[tuple[str, ...]] = []  # those read as strings too
        self.stages: list[dict[str, str]] = [{} for _ in range(7)]
        self.names: dict[tuple[int, str], str] = {}

    def path(self, dotted: str) -> str:
        """The JSON text at a dotted path, as ``segment._get`` walks it."""
        return self.steps(tuple(dotted.split(".")))

    def steps(self, steps: tuple[str, ...]) -> str:
        if steps not in self.paths:
            self.paths.append(steps)
        return f"p{self.paths.index(steps) + 1}"

    def col(self, stage: int, expr: str) -> str:
        """A column computing ``expr`` at ``stage`` (the same expression is one column)."""
        key = (stage, expr)
        if key not in self.names:
            self.names[key] = f"c{len(self.names) + 1}"
            self.stages[stage][self.names[key]] = expr
        return self.names[key]

    def string(self, p: str, stage: int = 1) -> str:
        """The string a JSON text holds (null when it is not a string)."""
        if p.startswith("p") and p[1:].isdigit():  # a path's: from json_extract_string
            steps = self.paths[int(p[1:]) - 1]
            if steps not in self.string_paths:
                self.string_paths.append(steps)
            sv = f"sv[{self.string_paths.index(steps) + 1}]"
            return self.col(stage, f"case when {_is_str(p)} then {sv} end")
        return self.col(stage, f"case when {_is_str(p)} then {p}::json->>'$' end")

    def extract_sql(self, strings: bool = False) -> str:
        paths = self.string_paths if strings else self.paths
        return "[" + ", ".join(_lit(_json_path(p)) for p in paths) + "]"

    def objects_sql(self) -> str:
        """Every object a path goes through (the root included), for the duplicate-key check."""
        prefixes = {()}
        for steps in self.paths:
            prefixes.update(steps[:i] for i in range(1, len(steps)))
        return "[" + ", ".join(_lit(_json_path(p)) for p in sorted(prefixes)) + "]"

    def first(self, dotted: Sequence[str]) -> tuple[str, str]:
        """(index of the first present path, 0 when none; its JSON text) (``segment._first``)."""
        if not dotted:
            return "0", "null"
        ps = [self.path(p) for p in dotted]
        whens = " ".join(f"when {_present(p)} then {i + 1}" for i, p in enumerate(ps))
        index = f"case {whens} else 0 end"
        value = "case " + " ".join(f"when {_present(p)} then {p}" for p in ps) + " end"
        return self.col(1, index), self.col(1, value)


class _Compiler:
    """Builds the select's columns and expressions for one mapping."""

    def __init__(self, mapping: segment.TrackerMapping) -> None:
        self.raw = mapping.raw
        self.c = _Columns()
        self.groups: list[tuple[str, dict, dict]] = [("page_view", self.raw["fields_from"], {})]
        self.names: dict[str, int] = {}  # track name -> group (None entries: -1)
        self.grp = "null"  # the group's column, once named (mapped_select)
        keys: dict[str, int] = {}
        for name, entry in mapping.track.items():
            if entry is None:
                self.names[name] = -1
                continue
            fields = {**self.raw["fields_from"], **entry.get("fields_from", {})}
            spec = (entry["event_type"], fields, entry.get("properties", {}))
            key = json.dumps(spec, sort_keys=True)
            if key not in keys:
                keys[key] = len(self.groups)
                self.groups.append(spec)
            self.names[name] = keys[key]

    # --------------------------------------------------------------- per group

    def by_group(self, build) -> str:
        """``case grp when g then build(g) ... end`` over the mapped groups."""
        whens = " ".join(f"when {g} then {build(g)}" for g in range(len(self.groups)))
        return f"case {self.grp} {whens} end"

    def title_reason(self, group: int) -> str:
        """The ``invalid_value`` of a list of ids that is not one id, else null."""
        event_type, fields, _ = self.groups[group]
        paths = list(fields.get("title_id", ()))
        if "title_id" not in segment.top_level_fields(event_type) or not paths:
            return "null"
        index, value = self.c.first(paths)
        named = f"case {index} " + " ".join(
            f"when {i + 1} then {_lit(p)}" for i, p in enumerate(paths)) + " end"  # fmt: skip
        n = self.c.col(2, f"case when left({value}, 1) = '[' then json_array_length({value}) end")
        return (
            f"case when {n} <> 1 then 'invalid_value: title_id (' || {named} || ') holds ' "
            f"|| {n} || ' ids, not one' end"
        )

    def top(self, group: int) -> str:
        """The event's top-level members after event_type (``segment._fields``)."""
        event_type, fields, _ = self.groups[group]
        members = [f"'\"event_type\":' || {_json_lit(event_type)}"]
        for name in segment.top_level_fields(event_type):
            index, value = self.c.first(fields.get(name, ()))
            if name == "title_id":
                value = self.c.col(2, f"case when left({value}, 1) = '[' then coalesce("
                                   f"json_extract({value}, '$[0]')::varchar, 'null') "
                                   f"else {value} end")  # fmt: skip
            members.append(f"case when {index} > 0 then {_json_lit(name)} || ':' || {value} end")
        return "concat_ws(',', " + ", ".join(members) + ")"

    def properties(self, group: int) -> str:
        """The event's ``properties`` JSON text (``segment._track``, ``segment._page``)."""
        if group == 0:
            name = self.c.path("name")
            names = " ".join(
                f"when {_lit(k)} then {_json_lit(p)}"
                for k, p in self.raw.get("page_names", {}).items()
            )
            page = name
            if names:
                page = f"coalesce(case {self.c.string(name)} {names} end, {name})"
            return (
                f"case when {_not_null(name)} then '{{\"page\":' || {page} || '}}' else 'null' end"  # noqa: E501
            )
        event_type, _, spec = self.groups[group]
        sources: dict[str, list[str]] = {}
        if segment.keeps_player_properties(event_type):
            for k in self.raw.get("player_properties", ()):
                sources[k] = [k]
        for contract_name, source in spec.items():
            sources[contract_name] = [source, *sources.get(contract_name, [])]
        members = []
        for key, srcs in sources.items():
            value = "coalesce(" + ", ".join(self.c.steps(("properties", s)) for s in srcs) + ")"
            members.append(
                f"case when {value} is not null then {_json_lit(key)} || ':' || {value} end"
            )  # noqa: E501
        if not members:
            return "'null'"
        joined = "concat_ws(',', " + ", ".join(members) + ")"
        return f"coalesce('{{' || nullif({joined}, '') || '}}', 'null')"

    # --------------------------------------------------------------- every call

    def group(self) -> str:
        """The call's group: 0 page/screen, a track entry's, -1 a null entry, else null.

        Its column is ``self.grp``, which the other expressions read.
        """
        call, event = self.c.string(self.c.path("type")), self.c.string(self.c.path("event"))
        names = " ".join(f"when {_lit(n)} then {g}" for n, g in self.names.items())
        return (
            f"case when {call} in ('page', 'screen') then 0 "
            f"when {call} = 'track' then case {event} {names or 'when null then null'} end end"
        )

    def call_reason(self) -> tuple[str, str]:
        """(reason of the call type and track name or null, flag: only Python can say it)."""
        call, event = self.c.string(self.c.path("type")), self.c.string(self.c.path("event"))
        skipped = " ".join(
            f"when {_lit(c)} then {_lit(segment.NO_CONTRACT_EVENT + ': ' + r)}"
            for c, r in segment.SKIPPED_CALLS.items()
        )
        null_names = " ".join(
            f"when {_lit(n)} then "
            f"{_lit(f'{segment.NO_CONTRACT_EVENT}: track event {n!r} has no contract event')}"
            for n, g in self.names.items() if g == -1
        )  # fmt: skip
        types = ", ".join(segment.CALL_TYPES)
        reason = f"""case
            when {call} in ({", ".join(map(_lit, segment.SKIPPED_CALLS))})
                then case {call} {skipped} end
            when {call} = 'track' then case
                when {event} is null or {event} = ''
                    then 'missing_field: event (the track call''s name)'
                when {self.grp} is null then {_lit(segment.UNMAPPED + ": track event '")} || {event}
                    || ''' is not in the mapping'
                when {self.grp} = -1 then case {event} {null_names or "when null then null"} end
                end
            when {call} in ('page', 'screen') then null
            else {_lit(segment.UNMAPPED + ": call type ")}
                || coalesce(left('''' || {call} || '''', 40), 'missing')
                || {_lit(" is not one of " + types)}
            end"""
        plain = _lit(_PLAIN_ASCII)
        odd = (
            f"coalesce(({call} not in ({', '.join(map(_lit, segment.CALL_TYPES))}) "
            f"and not regexp_matches({call}, {plain})) or ({call} = 'track' and {self.grp} is null "
            f"and {event} <> '' and not regexp_matches({event}, {plain})), false)"
        )
        return reason, odd

    def platform(self) -> tuple[str, str]:
        """(platform JSON text or null, the missing_field reason) (``segment._platform``)."""
        whens = []
        for rule in self.raw["platform_from"]:
            s = self.c.string(self.c.path(rule["path"]))
            for value, platform in rule["values"].items():
                whens.append(f"when {s} = {_lit(value)} then {_json_lit(platform)}")
        default = self.raw.get("platform_default")
        paths = ", ".join(rule["path"] for rule in self.raw["platform_from"])
        fallback = _json_lit(default) if default else "null"
        expr = f"case {' '.join(whens)} else {fallback} end" if whens else fallback
        return self.col(2, expr), _lit(f"missing_field: platform (no known value at {paths})")

    def col(self, stage: int, expr: str) -> str:
        return self.c.col(stage, expr)

    def time(self, key: str) -> tuple[str, str, str]:
        """(reason or null, us since the epoch, flag: only Python can parse it) of a timestamp."""
        p = self.c.path(key)
        s = self.c.string(p)
        safe = self.col(2, f"regexp_matches({s}, {_lit(_SAFE_TIME)})")  # implies the pattern
        ok = self.col(
            3, f"case when {safe} then true else regexp_matches({s}, {_lit(_DATE_TIME)}) end"
        )  # noqa: E501
        us = self.col(3, f"case when {safe} then epoch_us(try_cast({s} as timestamptz)) end")
        reason = (
            f"case when not {_is_str(p)} then {_lit('wrong_type: ' + key + ' is not a string')} "
            f"when not {ok} then "
            f"{_lit('wrong_type: ' + key + ' is not an RFC 3339 timestamp with an offset')} end"
        )
        unsure = f"coalesce({ok} and (not {safe} or {us} is null), false)"
        return reason, us, self.col(4, unsure)

    def common(self) -> dict[str, str]:
        """Members and checks of every event (``segment._common``, ``segment.occurred_at``)."""
        raw, c = self.raw, self.c
        device_i, device = c.first(raw["device_id_from"])
        _, user = c.first(raw["user_id_from"])
        _, country = c.first(raw.get("country_from", ()))
        app_i, app = c.first(raw.get("app_version_from", ()))
        mid, recv, orig, ts, sent = (c.path(k) for k in
                                     ("messageId", "receivedAt", "originalTimestamp",
                                      "timestamp", "sentAt"))  # fmt: skip
        times = {
            k: self.time(k) for k in ("receivedAt", "originalTimestamp", "timestamp", "sentAt")
        }
        client_reason = (f"case when {_not_null(orig)} then {times['originalTimestamp'][0]} "
                         f"when {_not_null(ts)} then {times['timestamp'][0]} end")  # fmt: skip
        client_us = (f"case when {_not_null(orig)} then {times['originalTimestamp'][1]} "
                     f"when {_not_null(ts)} then {times['timestamp'][1]} end")  # fmt: skip
        recv_us, sent_us = times["receivedAt"][1], times["sentAt"][1]
        occurred_us = self.col(4, f"case when {_not_null(orig)} or {_not_null(ts)} then "
                                  f"{client_us} + coalesce({recv_us} - {sent_us}, 0) "
                                  f"else {recv_us} end")  # fmt: skip
        platform, platform_missing = self.platform()
        devices = " or ".join(raw["device_id_from"])
        mid_s = c.string(mid)
        is_uuid = self.col(2, f"regexp_matches({mid_s}, {_lit(_UUID)})")
        namespace = _lit(segment.MESSAGE_ID_NAMESPACE.hex)
        h = self.col(3, f"case when not {is_uuid} then sha1(unhex({namespace}) "
                        f"|| encode({mid_s})) end")  # fmt: skip
        reason = f"""coalesce(
            case when not {_present(recv)} then 'missing_field: received_at (receivedAt)'
                 else {times["receivedAt"][0]} end,
            @call_reason@, @title_reason@,
            case when {device_i} = 0 then {_lit(f"missing_field: device_id ({devices})")} end,
            case when not {_present(mid)} then 'missing_field: event_id (messageId)'
                 when not {_is_str(mid)} then 'wrong_type: event_id (messageId) is not a string'
            end,
            {client_reason},
            case when {_not_null(sent)} then {times["sentAt"][0]} end,
            case when {platform} is null then {platform_missing} end)"""
        return {
            "reason": reason,
            "unsure": " or ".join(t[2] for t in times.values()),
            "occurred_us": occurred_us,
            "received_us": recv_us,
            "event_id": self.col(
                5,
                f"case when {h} is null then {mid_s} else {h}[1:8] || '-' "
                f"|| {h}[9:12] || '-5' || {h}[14:16] || '-' || translate({h}[17], "
                f"'0123456789abcdef', '89ab89ab89ab89ab') || {h}[18:20] || '-' "
                f"|| {h}[21:32] end",
            ),  # fmt: skip
            "user": f"coalesce({user}, 'null')",
            "device": device,
            "platform": platform,
            "app": f"case when {app_i} > 0 then {app} else 'null' end",
            "country": self.col(
                2,
                f"case when regexp_matches({c.string(country, 2)}, "
                f"{_lit(_COUNTRY)}) then {country} else 'null' end",
            ),  # fmt: skip
        }


def mapped_select(mapping: segment.TrackerMapping, source: str) -> str:
    """A select of ``(seq, line, reason_code, reason, python)`` over ``source``'s ``(seq, line)``.

    ``source`` holds JSON objects (the loader's line checks passed). A row
    flagged ``python`` has no answer here (``line`` and ``reason`` are null):
    the Python mapping decides it.
    """
    k = _Compiler(mapping)
    c = k.c
    k.grp = c.col(2, k.group())
    call_reason, call_odd = k.call_reason()
    title_reason = k.by_group(k.title_reason)
    tops = k.by_group(k.top)
    properties = k.by_group(k.properties)
    common = k.common()
    reason = common["reason"].replace("@call_reason@", call_reason, 1)
    reason = reason.replace("@title_reason@", title_reason, 1)
    reason_col = c.col(5, reason)
    # a copied object (or an array holding one) may hold a key twice, deep down; a copied
    # number may be one DuckDB and Python read differently
    copied = [c.steps(steps) for steps in c.paths if steps not in _NOT_COPIED]
    nested = " or ".join(
        f"coalesce(left({p}, 1) <> '\"' and (left({p}, 1) = '{{' or (left({p}, 1) = '[' "
        f"and contains({p}, '{{')) or regexp_matches({p}, {_lit(_ODD_NUMBER)})), false)"
        for p in copied
    )
    odd = c.col(5, f"{call_odd} or {common['unsure']} or {nested or 'false'}")
    members = [
        f"'\"event_id\":' || to_json({common['event_id']})",
        f"'\"schema_version\":' || {_json_lit(segment.SCHEMA_VERSION)}",
        f"'\"occurred_at\":' || {_stamp(common['occurred_us'])}",
        f"'\"received_at\":' || {_stamp(common['received_us'])}",
        f"'\"user_id\":' || {common['user']}",
        f"'\"device_id\":' || {common['device']}",
        f"'\"platform\":' || {common['platform']}",
        f"'\"app_version\":' || {common['app']}",
        f"'\"country\":' || {common['country']}",
        tops,
        f"'\"properties\":' || {properties}",
    ]
    line = "'{' || concat_ws(',', " + ", ".join(members) + ") || '}'"
    python = c.col(
        6,
        f"odd_json or {odd} or ({reason_col} is null and not ("
        f"{common['occurred_us']} between {_MIN_US} and {_MAX_US} "
        f"and {common['received_us']} between {_MIN_US} and {_MAX_US}))",
    )
    ctes = [
        f"""x as (
            select seq, line, json_extract(line, {c.extract_sql()}) as v,
                   json_extract_string(line, {c.extract_sql(strings=True)}) as sv,
                   coalesce(regexp_matches(line, {_lit(_TRAILING_COMMA)})
                   or (length(line) > {_MAX_INT_DIGITS}
                       and regexp_matches(line, '[0-9]{{1000}}'))
                   or (length(line) >= {2 * _DEEP} and length(line) - length(
                       regexp_replace(line, '[\\[{{]', '', 'g')) >= {_DEEP})
                   or list_bool_or(list_transform(json_keys(line, {c.objects_sql()}),
                                   lambda k: len(k) <> list_unique(k))), false) as odd_json
            from src)""",
        "s0 as (select *, "
        + ", ".join(f"v[{i + 1}]::varchar as p{i + 1}" for i in range(len(c.paths)))
        + " from x)",
    ]
    for n, stage in enumerate(c.stages[1:], start=1):
        cols = ", ".join(f"{expr} as {name}" for name, expr in stage.items())
        if cols:
            ctes.append(f"s{n} as (select *, {cols} from s{n - 1})")
        else:
            ctes.append(f"s{n} as (select * from s{n - 1})")
    body = ",\n        ".join(ctes)
    return f"""
        with src as ({source}),
        {body}
        select seq,
               case when not {python} and {reason_col} is null then {line} end as line,
               case when not {python} then split_part({reason_col}, ': ', 1) end as reason_code,
               case when not {python} then {reason_col} end as reason,
               {python} as python
        from s{len(c.stages) - 1}
    """

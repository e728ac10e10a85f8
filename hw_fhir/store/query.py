"""Parse FHIR search parameters into a :class:`Query` the SqlStore turns into SQL.

Supported: every parameter in :mod:`~hw_fhir.store.searchparams`, ``_id``,
``_lastUpdated``, ``_tag``; comma = OR; repeated parameter = AND; date prefixes
``eq ne gt lt ge le``; tokens ``system|code``, ``|code``, ``system|``, ``code``
and ``:not``; references ``Type/id``, ``id``, absolute url and ``:Type``;
strings (starts-with) with ``:exact`` / ``:contains``; ``:missing`` on all;
``_count``, ``_offset``, ``_sort``, ``_total``, ``_summary=count``,
``_include`` and ``_revinclude``. Unknown parameters are ignored with a warning,
or rejected when ``strict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InvalidSearch, Issue
from ..limits import check_search_value
from .searchparams import SearchParam, date_range, params_for, parse_reference, normalize_string

__all__ = ["Filter", "Query", "parse_query", "MAX_COUNT", "DEFAULT_COUNT", "split_values"]

DEFAULT_COUNT = 50
MAX_COUNT = 1000
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
_IGNORED = {"_format", "_pretty", "_elements"}


@dataclass(frozen=True)
class Filter:
    """One AND-ed condition: a parameter, its modifier, and OR-ed values."""

    name: str
    type: str
    modifier: str | None
    values: tuple[object, ...]


@dataclass
class Query:
    """A parsed search."""

    resource_type: str
    filters: list[Filter] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    cursor: tuple[str, str] | None = None
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    #: ``_total`` as asked (None: the server's choice, see :mod:`~hw_fhir.store.totals`)
    total: str | None = None
    summary_count: bool = False
    include: list[tuple[str, str, str | None]] = field(default_factory=list)
    revinclude: list[tuple[str, str, str | None]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    echo: list[tuple[str, str]] = field(default_factory=list)


def split_values(raw: str) -> list[str]:
    """Split a parameter value on commas not escaped with a backslash."""
    out, cur, esc = [], [], False
    for ch in raw:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _bad(message: str, name: str) -> InvalidSearch:
    return InvalidSearch(message, issues=[Issue(message, code="invalid", expression=name)])


def _int(name: str, raw: str, *, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name} must be a whole number, not {raw!r}", name) from None
    if value < minimum:
        raise _bad(f"{name} must be at least {minimum}, not {value}", name)
    return value


def _date_value(name: str, raw: str) -> tuple[str, str, str]:
    prefix = "eq"
    if raw[:2] in _PREFIXES and not raw[:2].isdigit():
        prefix, raw = raw[:2], raw[2:]
    elif raw[:2].isalpha():
        raise _bad(f"{name}: unknown date prefix {raw[:2]!r} (use eq ne gt lt ge le sa eb)", name)
    try:
        low, high = date_range(raw)
    except ValueError:
        raise _bad(f"{name}: {raw!r} is not a valid FHIR date or dateTime", name) from None
    return prefix, low, high


def _token_value(raw: str) -> tuple[str | None, str | None]:
    """Return (system, code); system '' means 'no system', None means any; code None = any."""
    if "|" not in raw:
        return None, raw
    system, code = raw.split("|", 1)
    return system, (code or None)


def _reference_value(sp: SearchParam, modifier: str | None, raw: str,
                     base_url: str | None) -> tuple[str | None, str | None, str | None]:
    if base_url and raw.startswith(base_url.rstrip("/") + "/"):
        raw = raw[len(base_url.rstrip("/")) + 1:]
    ref = parse_reference(raw)
    if ref.url and not ref.target_id:
        return None, None, ref.url
    target_type = ref.target_type
    if modifier and modifier[:1].isupper():
        target_type = modifier
    if target_type is None and len(sp.targets) == 1:
        target_type = sp.targets[0]
    if ref.url and base_url is None:
        return target_type, ref.target_id, ref.url
    return target_type, ref.target_id, None


def _parse_filter(rtype: str, sp: SearchParam, name: str, modifier: str | None, raw: str,
                  base_url: str | None) -> Filter:
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise _bad(f"{name}:missing takes true or false", name)
        return Filter(name, sp.type, modifier, (raw == "true",))
    allowed = {
        "token": {None, "not"},
        "string": {None, "exact", "contains"},
        "date": {None},
        "uri": {None},
        "reference": {None},
    }[sp.type]
    if modifier not in allowed and not (sp.type == "reference" and modifier and modifier[:1].isupper()):
        raise _bad(f"{name}: modifier :{modifier} is not supported", name)
    values: list[object] = []
    for v in split_values(raw):
        if v == "":
            raise _bad(f"{name}: empty value", name)
        if sp.type == "date":
            values.append(_date_value(name, v))
        elif sp.type == "token":
            values.append(_token_value(v))
        elif sp.type == "string":
            values.append(v if modifier == "exact" else normalize_string(v))
        elif sp.type == "uri":
            values.append(v)
        else:
            values.append(_reference_value(sp, modifier, v, base_url))
    return Filter(name, sp.type, None if sp.type == "reference" else modifier, tuple(values))


def _parse_include(rtype: str, raw: str, *, rev: bool) -> tuple[str, str, str | None]:
    parts = raw.split(":")
    key = "_revinclude" if rev else "_include"
    if len(parts) not in (2, 3):
        raise _bad(f"{key} must be Type:param[:Target], not {raw!r}", key)
    source, param = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    sp = params_for(source).get(param)
    if sp is None or sp.type != "reference":
        raise _bad(f"{key}: {source}:{param} is not a supported reference parameter", key)
    if not rev and source != rtype:
        raise _bad(f"_include must start with the searched type {rtype}, not {source}", key)
    return source, param, target


def parse_query(resource_type: str, params: list[tuple[str, str]], *, strict: bool = False,
                base_url: str | None = None) -> Query:
    """Parse search parameters; raise InvalidSearch on malformed or (strict) unknown ones."""
    q = Query(resource_type)
    known = params_for(resource_type)
    total_explicit = False
    for name_mod, raw in params:
        check_search_value(name_mod, raw)  # NUL/control characters: 400, on every database
        name, _, modifier = name_mod.partition(":")
        modifier = modifier or None
        if name == "_count":
            q.count = min(_int(name, raw, minimum=0), MAX_COUNT)
        elif name == "_offset":
            q.offset = _int(name, raw, minimum=0)
        elif name == "_cursor":
            lu, _, rid = raw.partition(",")
            if not lu or not rid:
                raise _bad("_cursor is malformed", name)
            q.cursor = (lu, rid)
        elif name == "_sort":
            for key in split_values(raw):
                desc = key.startswith("-")
                key = key.lstrip("-")
                sp = known.get(key)
                if key not in ("_id", "_lastUpdated") and (sp is None or sp.type not in
                                                           ("date", "string", "token", "uri")):
                    raise _bad(f"_sort: cannot sort {resource_type} by {key!r}", name)
                q.sort.append((key, desc))
        elif name == "_total":
            if raw not in ("none", "estimate", "accurate"):
                raise _bad("_total must be none, estimate or accurate", name)
            q.total = raw
            total_explicit = True
        elif name == "_summary":
            if raw == "count":
                q.summary_count = True
            elif raw != "false":
                q.warnings.append(f"_summary={raw} is not supported and was ignored")
                continue
        elif name == "_include":
            q.include.append(_parse_include(resource_type, raw, rev=False))
        elif name == "_revinclude":
            q.revinclude.append(_parse_include(resource_type, raw, rev=True))
        elif name in _IGNORED:
            continue
        elif name == "_id":
            if modifier:
                raise _bad("_id takes no modifier", name)
            q.filters.append(Filter("_id", "id", None, tuple(split_values(raw))))
        elif name == "_lastUpdated":
            if modifier:
                raise _bad("_lastUpdated takes no modifier", name)
            q.filters.append(Filter("_lastUpdated", "lastUpdated", None,
                                    tuple(_date_value(name, v) for v in split_values(raw))))
        elif name in known:
            q.filters.append(_parse_filter(resource_type, known[name], name, modifier, raw, base_url))
        else:
            message = f"Unknown search parameter {name!r} for {resource_type}"
            if strict:
                raise _bad(message, name)
            q.warnings.append(message + " (ignored)")
            continue
        q.echo.append((name_mod, raw))
    if not total_explicit and (q.offset or q.cursor):
        q.total = "none"
    return q

"""Search parameters: which are supported, and how their values are taken from a resource.

Each parameter names a type (token, reference, string, date, uri) and element
paths. A path is dotted element names below the resource; a name ending in
``[x]`` matches any choice-type element (``effective[x]`` → ``effectiveDateTime``,
``effectivePeriod``...). The extracted values are written into index tables at
every write, so searches never scan JSON.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

__all__ = [
    "SearchParam",
    "PARAMS",
    "COMMON_PARAMS",
    "HW_FHIR_SP_BASE",
    "params_for",
    "extract",
    "normalize_string",
    "prefix_range",
    "date_range",
    "TokenValue",
    "RefValue",
]

HW_FHIR_SP_BASE = "http://hw-fhir.org/fhir/SearchParameter"
_HL7_SP = "http://hl7.org/fhir/SearchParameter"


@dataclass(frozen=True)
class SearchParam:
    """One search parameter of one resource type."""

    name: str
    type: str  # token | reference | string | date | uri
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()  # reference target types; () = any
    definition: str = ""


@dataclass(frozen=True)
class TokenValue:
    """An indexed token: system (may be None) and code."""

    system: str | None
    code: str


@dataclass(frozen=True)
class RefValue:
    """An indexed reference: target type and id, or a raw (canonical / absolute) url."""

    target_type: str | None
    target_id: str | None
    url: str | None = None


def _p(rtype: str, name: str, type_: str, *paths: str, targets: tuple[str, ...] = (),
       custom: bool = False) -> SearchParam:
    base = HW_FHIR_SP_BASE if custom else _HL7_SP
    return SearchParam(name, type_, paths, targets, f"{base}/{rtype}-{name}")


_ANY_SUBJECT = ("Patient", "Group")

_PARAM_LIST: dict[str, list[SearchParam]] = {
    "Task": [
        _p("Task", "patient", "reference", "for", targets=("Patient",)),
        _p("Task", "subject", "reference", "for"),
        _p("Task", "owner", "reference", "owner"),
        _p("Task", "requester", "reference", "requester"),
        _p("Task", "status", "token", "status"),
        _p("Task", "business-status", "token", "businessStatus"),
        _p("Task", "code", "token", "code"),
        _p("Task", "based-on", "reference", "basedOn"),
        _p("Task", "part-of", "reference", "partOf", targets=("Task",)),
        _p("Task", "focus", "reference", "focus"),
        _p("Task", "authored-on", "date", "authoredOn"),
        _p("Task", "modified", "date", "lastModified"),
        _p("Task", "period", "date", "executionPeriod"),
        _p("Task", "due", "date", "restriction.period", custom=True),
        _p("Task", "identifier", "token", "identifier"),
        _p("Task", "intent", "token", "intent"),
        _p("Task", "output", "reference", "output.value[x]", custom=True),
    ],
    "QuestionnaireResponse": [
        _p("QuestionnaireResponse", "subject", "reference", "subject"),
        _p("QuestionnaireResponse", "patient", "reference", "subject", targets=("Patient",)),
        _p("QuestionnaireResponse", "questionnaire", "uri", "questionnaire"),
        _p("QuestionnaireResponse", "status", "token", "status"),
        _p("QuestionnaireResponse", "authored", "date", "authored"),
        _p("QuestionnaireResponse", "based-on", "reference", "basedOn"),
        _p("QuestionnaireResponse", "part-of", "reference", "partOf"),
        _p("QuestionnaireResponse", "author", "reference", "author"),
        _p("QuestionnaireResponse", "identifier", "token", "identifier"),
    ],
    "Questionnaire": [
        _p("Questionnaire", "url", "uri", "url"),
        _p("Questionnaire", "version", "token", "version"),
        _p("Questionnaire", "status", "token", "status"),
        _p("Questionnaire", "name", "string", "name"),
        _p("Questionnaire", "title", "string", "title"),
        _p("Questionnaire", "code", "token", "code", "item.code"),
        _p("Questionnaire", "questionnaire-code", "token", "code", custom=True),
        _p("Questionnaire", "context", "token", "useContext.value[x]"),
        _p("Questionnaire", "publisher", "string", "publisher"),
        _p("Questionnaire", "derived-from", "uri", "derivedFrom", custom=True),
        _p("Questionnaire", "identifier", "token", "identifier"),
        _p("Questionnaire", "date", "date", "date"),
    ],
    "Observation": [
        _p("Observation", "subject", "reference", "subject"),
        _p("Observation", "patient", "reference", "subject", targets=("Patient",)),
        _p("Observation", "code", "token", "code"),
        _p("Observation", "category", "token", "category"),
        _p("Observation", "date", "date", "effective[x]"),
        _p("Observation", "derived-from", "reference", "derivedFrom"),
        _p("Observation", "has-member", "reference", "hasMember"),
        _p("Observation", "status", "token", "status"),
        _p("Observation", "identifier", "token", "identifier"),
    ],
    "CarePlan": [
        _p("CarePlan", "subject", "reference", "subject"),
        _p("CarePlan", "patient", "reference", "subject", targets=("Patient",)),
        _p("CarePlan", "status", "token", "status"),
        _p("CarePlan", "intent", "token", "intent"),
        _p("CarePlan", "category", "token", "category"),
        _p("CarePlan", "instantiates-canonical", "uri",
           "instantiatesCanonical", "activity.detail.instantiatesCanonical"),
        _p("CarePlan", "date", "date", "period"),
        _p("CarePlan", "author", "reference", "author", custom=True),
        _p("CarePlan", "based-on", "reference", "basedOn"),
        _p("CarePlan", "identifier", "token", "identifier"),
    ],
    "Communication": [
        _p("Communication", "subject", "reference", "subject"),
        _p("Communication", "patient", "reference", "subject", targets=("Patient",)),
        _p("Communication", "status", "token", "status"),
        _p("Communication", "part-of", "reference", "partOf"),
        _p("Communication", "based-on", "reference", "basedOn"),
        _p("Communication", "about", "reference", "about", custom=True),
        _p("Communication", "sent", "date", "sent"),
        _p("Communication", "received", "date", "received"),
        _p("Communication", "recipient", "reference", "recipient"),
        _p("Communication", "medium", "token", "medium"),
        _p("Communication", "category", "token", "category"),
        _p("Communication", "identifier", "token", "identifier"),
    ],
    "CommunicationRequest": [
        _p("CommunicationRequest", "subject", "reference", "subject"),
        _p("CommunicationRequest", "patient", "reference", "subject", targets=("Patient",)),
        _p("CommunicationRequest", "status", "token", "status"),
        _p("CommunicationRequest", "about", "reference", "about", custom=True),
        _p("CommunicationRequest", "based-on", "reference", "basedOn"),
        _p("CommunicationRequest", "authored", "date", "authoredOn"),
        _p("CommunicationRequest", "occurrence", "date", "occurrence[x]"),
        _p("CommunicationRequest", "recipient", "reference", "recipient"),
        _p("CommunicationRequest", "medium", "token", "medium"),
        _p("CommunicationRequest", "category", "token", "category"),
        _p("CommunicationRequest", "identifier", "token", "identifier"),
    ],
    "Flag": [
        _p("Flag", "subject", "reference", "subject"),
        _p("Flag", "patient", "reference", "subject", targets=("Patient",)),
        _p("Flag", "status", "token", "status", custom=True),
        _p("Flag", "author", "reference", "author"),
        _p("Flag", "date", "date", "period"),
        _p("Flag", "category", "token", "category", custom=True),
        _p("Flag", "identifier", "token", "identifier"),
    ],
    "Encounter": [
        _p("Encounter", "subject", "reference", "subject"),
        _p("Encounter", "patient", "reference", "subject", targets=("Patient",)),
        _p("Encounter", "status", "token", "status"),
        _p("Encounter", "date", "date", "period"),
        _p("Encounter", "participant", "reference", "participant.individual"),
        _p("Encounter", "identifier", "token", "identifier"),
    ],
    "Patient": [
        _p("Patient", "identifier", "token", "identifier"),
        _p("Patient", "name", "string", "name"),
        _p("Patient", "family", "string", "name.family"),
        _p("Patient", "given", "string", "name.given"),
        _p("Patient", "birthdate", "date", "birthDate"),
        _p("Patient", "gender", "token", "gender"),
        _p("Patient", "telecom", "token", "telecom"),
        _p("Patient", "general-practitioner", "reference", "generalPractitioner"),
        _p("Patient", "active", "token", "active"),
    ],
    "Practitioner": [
        _p("Practitioner", "identifier", "token", "identifier"),
        _p("Practitioner", "name", "string", "name"),
        _p("Practitioner", "family", "string", "name.family"),
        _p("Practitioner", "given", "string", "name.given"),
        _p("Practitioner", "telecom", "token", "telecom"),
        _p("Practitioner", "active", "token", "active"),
    ],
    "PractitionerRole": [
        _p("PractitionerRole", "practitioner", "reference", "practitioner"),
        _p("PractitionerRole", "identifier", "token", "identifier"),
    ],
    "Group": [
        _p("Group", "identifier", "token", "identifier"),
        _p("Group", "member", "reference", "member.entity"),
        _p("Group", "managing-entity", "reference", "managingEntity"),
        _p("Group", "name", "string", "name", custom=True),
    ],
    "ValueSet": [
        _p("ValueSet", "url", "uri", "url"),
        _p("ValueSet", "version", "token", "version"),
        _p("ValueSet", "status", "token", "status"),
    ],
    "CodeSystem": [
        _p("CodeSystem", "url", "uri", "url"),
        _p("CodeSystem", "version", "token", "version"),
        _p("CodeSystem", "status", "token", "status"),
    ],
    "CareTeam": [
        _p("CareTeam", "subject", "reference", "subject"),
        _p("CareTeam", "patient", "reference", "subject", targets=("Patient",)),
        _p("CareTeam", "status", "token", "status"),
        _p("CareTeam", "participant", "reference", "participant.member"),
    ],
    "Subscription": [
        _p("Subscription", "status", "token", "status"),
        _p("Subscription", "url", "uri", "channel.endpoint"),
        _p("Subscription", "criteria", "string", "criteria"),
    ],
    "Binary": [],
}

#: Parameters every resource type has (answered from the resource table itself).
COMMON_PARAMS = ("_id", "_lastUpdated", "_tag")

PARAMS: dict[str, dict[str, SearchParam]] = {
    rtype: {sp.name: sp for sp in (*lst, SearchParam("_tag", "token", ("meta.tag",), (),
                                                       f"{_HL7_SP}/Resource-tag"))}
    for rtype, lst in _PARAM_LIST.items()
}


def params_for(resource_type: str) -> dict[str, SearchParam]:
    """Return the search parameters of a resource type (empty for an unknown type)."""
    return PARAMS.get(resource_type, {})


# ---------------------------------------------------------------------------
# extraction


def _walk(node: Any, parts: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for n in node:
            yield from _walk(n, parts)
        return
    if not parts:
        yield node
        return
    if not isinstance(node, dict):
        return
    head, rest = parts[0], parts[1:]
    if head.endswith("[x]"):
        prefix = head[:-3]
        for key, value in node.items():
            if key.startswith(prefix) and key[len(prefix):][:1].isupper():
                yield from _walk(value, rest)
        return
    if head in node:
        yield from _walk(node[head], rest)


def normalize_string(value: str) -> str:
    """Lower-case and strip accents, for string search."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def prefix_range(column: Any, prefix: str) -> list[Any]:
    """Conditions ``prefix <= column < successor(prefix)``: every text starting with
    ``prefix`` and nothing else, in code-point order (SQLite's BINARY collation, the "C"
    collation of sp_string.value on PostgreSQL; an index can seek it where
    ``LIKE 'prefix%'`` with a bound pattern cannot)."""
    if not prefix:
        return []
    chars = list(prefix)
    while chars:
        nxt = ord(chars[-1]) + 1
        if 0xD800 <= nxt <= 0xDFFF:  # no surrogates in UTF-8: the next code point is U+E000
            nxt = 0xE000
        if nxt <= 0x10FFFF:
            chars[-1] = chr(nxt)
            return [column >= prefix, column < "".join(chars)]
        chars.pop()  # U+10FFFF has no successor: bump the character before it
    return [column >= prefix]


_UTC = timezone.utc
_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _fmt(dt: datetime) -> str:
    return dt.astimezone(_UTC).strftime(_FMT)


def date_range(value: str) -> tuple[str, str]:
    """Return the (low, high) UTC instants a FHIR date/dateTime/instant string covers.

    Both are formatted ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` so that text order is time
    order. Values without a time zone are taken as UTC. Raise ValueError if malformed.
    """
    v = value.strip()
    if len(v) == 4 and v.isdigit():
        lo = datetime(int(v), 1, 1, tzinfo=_UTC)
        return _fmt(lo), _fmt(datetime(int(v) + 1, 1, 1, tzinfo=_UTC) - timedelta(microseconds=1))
    if len(v) == 7 and v[4] == "-":
        y, m = int(v[:4]), int(v[5:7])
        lo = datetime(y, m, 1, tzinfo=_UTC)
        nxt = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=_UTC)
        return _fmt(lo), _fmt(nxt - timedelta(microseconds=1))
    if len(v) == 10:
        d = date.fromisoformat(v)
        lo = datetime(d.year, d.month, d.day, tzinfo=_UTC)
        return _fmt(lo), _fmt(lo + timedelta(days=1) - timedelta(microseconds=1))
    text = v.replace("Z", "+00:00")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_UTC)
    if "." in v:  # an instant: a point in time
        return _fmt(dt), _fmt(dt)
    # seconds precision covers the whole second
    hi = dt + timedelta(seconds=1) - timedelta(microseconds=1)
    return _fmt(dt), _fmt(hi)


def _token_values(value: Any) -> Iterator[TokenValue]:
    if isinstance(value, bool):
        yield TokenValue(None, "true" if value else "false")
    elif isinstance(value, (str, int, float)):
        yield TokenValue(None, str(value))
    elif isinstance(value, dict):
        if "coding" in value or "text" in value and "system" not in value and "value" not in value:
            for coding in value.get("coding") or []:
                if coding.get("code") is not None:
                    yield TokenValue(coding.get("system"), str(coding["code"]))
        elif "code" in value:  # Coding
            yield TokenValue(value.get("system"), str(value["code"]))
        elif "value" in value:  # Identifier, ContactPoint
            yield TokenValue(value.get("system"), str(value["value"]))


def parse_reference(ref: str) -> RefValue:
    """Split a reference string into (type, id); keep absolute and canonical urls as url."""
    ref = ref.strip()
    if ref.startswith(("urn:", "#")):
        return RefValue(None, None, ref)
    parts = ref.split("/")
    if ref.startswith(("http://", "https://")):
        if len(parts) >= 2 and "_history" in parts:
            i = parts.index("_history")
            parts = parts[:i]
        if len(parts) >= 2 and parts[-2][:1].isupper():
            return RefValue(parts[-2], parts[-1], ref)
        return RefValue(None, None, ref)
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) == 2 and parts[0][:1].isupper():
        return RefValue(parts[0], parts[1])
    return RefValue(None, ref)


def _ref_values(value: Any) -> Iterator[RefValue]:
    if isinstance(value, str):  # canonical
        yield RefValue(None, None, value)
    elif isinstance(value, dict) and isinstance(value.get("reference"), str):
        yield parse_reference(value["reference"])


def _string_values(value: Any) -> Iterator[tuple[str, str]]:
    """Yield (normalised, exact) pairs of a string or of the parts of a HumanName/Address."""
    if isinstance(value, str):
        yield normalize_string(value), value
    elif isinstance(value, dict):  # HumanName, Address
        for key in ("text", "family", "given", "prefix", "suffix", "line", "city", "state",
                    "postalCode", "country"):
            v = value.get(key)
            for s in v if isinstance(v, list) else [v]:
                if isinstance(s, str):
                    yield normalize_string(s), s


def _date_values(value: Any) -> Iterator[tuple[str, str]]:
    try:
        if isinstance(value, str):
            yield date_range(value)
        elif isinstance(value, dict) and ("start" in value or "end" in value):
            lo = date_range(value["start"])[0] if value.get("start") else "0001-01-01T00:00:00.000000Z"
            hi = date_range(value["end"])[1] if value.get("end") else "9999-12-31T23:59:59.999999Z"
            yield lo, hi
    except ValueError:
        return


def _uri_values(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
        if "|" in value:  # canonical with version: also index the bare url
            yield value.split("|", 1)[0]


def extract(resource: dict[str, Any], sp: SearchParam) -> list[Any]:
    """Return the index values of one search parameter in a resource."""
    out: list[Any] = []
    for path in sp.paths:
        for node in _walk(resource, path.split(".")):
            if sp.type == "token":
                out.extend(_token_values(node))
            elif sp.type == "reference":
                for ref in _ref_values(node):
                    if sp.targets and ref.target_type and ref.target_type not in sp.targets:
                        continue
                    out.append(ref)
            elif sp.type == "string":
                out.extend(_string_values(node))
            elif sp.type == "date":
                out.extend(_date_values(node))
            elif sp.type == "uri":
                out.extend(_uri_values(node))
    return list(dict.fromkeys(out))

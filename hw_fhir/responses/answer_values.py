"""FHIR answer values (``value[x]``): their shape, comparison, limits and display.

An answer's value is handled as a typed pair ``(type, value)``, e.g. ``("Integer", 3)``
(see :func:`typed_value`). Used by validation (shape, options, limits) and by the form
model's enableWhen evaluation (comparison and equality).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from .definitions import (
    MAX_DECIMAL_PLACES,
    MAX_QUANTITY,
    MAX_VALUE,
    MIN_LENGTH,
    MIN_QUANTITY,
    MIN_VALUE,
    as_list,
)

__all__ = [
    "VALUE_KEYS",
    "typed_value",
    "is_number",
    "shape_problem",
    "mismatch_message",
    "extension_value",
    "limit_problems",
    "compare_values",
    "values_equal",
    "show_value",
    "show_options",
]

#: value[x] accepted for each item type (choice/open-choice also depend on answerOption).
VALUE_KEYS: dict[str, tuple[str, ...]] = {
    "boolean": ("valueBoolean",),
    "decimal": ("valueDecimal",),
    "integer": ("valueInteger",),
    "date": ("valueDate",),
    "dateTime": ("valueDateTime",),
    "time": ("valueTime",),
    "string": ("valueString",),
    "text": ("valueString",),
    "url": ("valueUri",),
    "attachment": ("valueAttachment",),
    "reference": ("valueReference",),
    "quantity": ("valueQuantity",),
}
_ANSWER_VALUE_KEYS = frozenset(
    "valueBoolean valueDecimal valueInteger valueDate valueDateTime valueTime valueString "
    "valueUri valueAttachment valueCoding valueQuantity valueReference".split()
)
_WHAT = {
    "valueBoolean": "yes or no (valueBoolean)",
    "valueDecimal": "a number (valueDecimal)",
    "valueInteger": "a whole number (valueInteger)",
    "valueDate": "a date (valueDate)",
    "valueDateTime": "a date and time (valueDateTime)",
    "valueTime": "a time of day (valueTime)",
    "valueString": "text (valueString)",
    "valueUri": "a web address (valueUri)",
    "valueAttachment": "a file (valueAttachment)",
    "valueCoding": "one of the listed choices (valueCoding)",
    "valueQuantity": "a quantity (valueQuantity)",
    "valueReference": "a reference (valueReference)",
}

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH_DAY = r"-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
_CLOCK = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_DATE = re.compile(f"{_YEAR}({_MONTH_DAY})?)?")
_DATETIME = re.compile(f"{_YEAR}({_MONTH_DAY}(T{_CLOCK}{_ZONE})?)?)?")
_TIME = re.compile(_CLOCK)
_INT32 = (-(2**31), 2**31 - 1)


def typed_value(element: Mapping[str, Any], prefix: str) -> tuple[str, Any] | None:
    """Return ``(type, value)`` of the single ``<prefix>[x]`` of an element, or None."""
    found = [
        (key[len(prefix) :], value)
        for key, value in element.items()
        if key.startswith(prefix) and len(key) > len(prefix) and key[len(prefix)].isupper()
    ]
    return found[0] if len(found) == 1 else None


def is_number(value: Any) -> bool:
    """Return whether a JSON value is a number (not a boolean)."""
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def shape_problem(key: str, value: Any) -> str | None:
    """Return what is malformed about a value[x], or None."""
    if key == "valueBoolean":
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    if key == "valueInteger":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{value!r} is not a whole number"
        if not _INT32[0] <= value <= _INT32[1]:
            return f"{value} is too large for a FHIR integer"
        return None
    if key == "valueDecimal":
        if not is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
            return f"{value!r} is not a number"
        return None
    if key in ("valueString", "valueUri"):
        if not isinstance(value, str):
            return f"{value!r} is not text"
        if not value.strip():
            return "the answer is empty; leave the question unanswered instead"
        if key == "valueUri" and re.search(r"\s", value):
            return f"{value!r} is not a valid web address (it contains spaces)"
        return None
    if key == "valueDate":
        return (
            None
            if isinstance(value, str) and _valid_date(value, _DATE)
            else (f"{value!r} is not a date (YYYY, YYYY-MM or YYYY-MM-DD)")
        )
    if key == "valueDateTime":
        return (
            None
            if isinstance(value, str) and _valid_date(value, _DATETIME)
            else (f"{value!r} is not a date-time (e.g. 2026-03-08T20:00:00+01:00)")
        )
    if key == "valueTime":
        return (
            None
            if isinstance(value, str) and _TIME.fullmatch(value)
            else (f"{value!r} is not a time of day (hh:mm:ss)")
        )
    if key == "valueCoding":
        if not isinstance(value, dict) or not (value.get("code") or value.get("display")):
            return "a coded answer needs a code"
        return None
    if key == "valueQuantity":
        if not isinstance(value, dict) or not is_number(value.get("value")):
            return "a quantity needs a numeric value"
        return None
    if key == "valueReference":
        if not isinstance(value, dict) or not (
            value.get("reference") or value.get("identifier") or value.get("display")
        ):
            return "a reference needs a reference, identifier or display"
        return None
    if key == "valueAttachment":
        if not isinstance(value, dict):
            return "an attachment must be an object"
        if value.get("data") and not value.get("contentType"):
            return "an attachment with data needs a contentType"
        return None
    return f"{key} is not a valid answer type"


def _valid_date(value: str, pattern: re.Pattern[str]) -> bool:
    if not pattern.fullmatch(value):
        return False
    if len(value) >= 10:
        try:
            date.fromisoformat(value[:10])
        except ValueError:
            return False
    return True


def mismatch_message(label: str, allowed: tuple[str, ...], key: str, value: Any) -> str:
    """Return the message for an answer whose value[x] type the item does not take."""
    expected = " or ".join(_WHAT.get(k, k) for k in allowed) or "no answer"
    if key not in _ANSWER_VALUE_KEYS:
        return f"{label}: {key} is not a valid answer type; expected {expected}"
    if key == "valueString" and isinstance(value, str):
        got = f"the text {value!r}"
    else:
        got = _WHAT[key]
    return f"{label}: expected {expected} but got {got}"



def extension_value(definition: Mapping[str, Any], url: str) -> tuple[str, Any] | None:
    """Return ``(type, value)`` of a definition's extension with this url, or None."""
    for ext in as_list(definition.get("extension")):
        if isinstance(ext, dict) and ext.get("url") == url:
            return typed_value(ext, "value")
    return None


def limit_problems(definition: Mapping[str, Any], typed: tuple[str, Any]) -> Iterator[str]:
    """Yield what breaks the item's min/max value, length or decimal-places limits."""
    kind, value = typed
    low = extension_value(definition, MIN_VALUE)
    high = extension_value(definition, MAX_VALUE)
    if kind == "Quantity":
        low = extension_value(definition, MIN_QUANTITY) or low
        high = extension_value(definition, MAX_QUANTITY) or high
    if low is not None:
        order = compare_values(typed, low)
        if order is not None and order < 0:
            yield f"{show_value(typed)} is below the minimum {show_value(low)}"
    if high is not None:
        order = compare_values(typed, high)
        if order is not None and order > 0:
            yield f"{show_value(typed)} is above the maximum {show_value(high)}"
    if kind in ("String", "Uri") and isinstance(value, str):
        longest = definition.get("maxLength")
        if isinstance(longest, int) and len(value) > longest:
            yield f"is {len(value)} characters long; at most {longest} allowed"
        shortest = extension_value(definition, MIN_LENGTH)
        if shortest and isinstance(shortest[1], int) and len(value) < shortest[1]:
            yield f"is {len(value)} characters long; at least {shortest[1]} needed"
    if kind == "Decimal":
        places = extension_value(definition, MAX_DECIMAL_PLACES)
        if places and isinstance(places[1], int):
            exponent = Decimal(str(value)).as_tuple().exponent
            if isinstance(exponent, int) and -exponent > places[1]:
                yield f"{value} has more than {places[1]} decimal places"


def _number(value: Any) -> Decimal | None:
    if not is_number(value):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _temporal(kind: str, value: Any) -> tuple[int, Any] | None:
    """Return ``(precision, comparable)`` for a date/dateTime/instant string."""
    if not isinstance(value, str):
        return None
    if kind in ("DateTime", "Instant") and "T" in value:
        try:
            return 4, datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    parts = value[:10].split("-")
    try:
        return len(parts), tuple(int(p) for p in parts)
    except ValueError:
        return None


def compare_values(a: tuple[str, Any], b: tuple[str, Any]) -> int | None:
    """Return -1/0/1 ordering two typed values, or None when they cannot be ordered."""
    (ka, va), (kb, vb) = a, b
    numbers = ("Integer", "Decimal")
    if ka in numbers and kb in numbers:
        na, nb = _number(va), _number(vb)
        if na is None or nb is None:
            return None
        return (na > nb) - (na < nb)
    dates = ("Date", "DateTime", "Instant")
    if ka in dates and kb in dates:
        ta, tb = _temporal(ka, va), _temporal(kb, vb)
        if ta is None or tb is None:
            return None
        if ta[0] == 4 and tb[0] == 4:
            if (ta[1].tzinfo is None) != (tb[1].tzinfo is None):
                return None
            return (ta[1] > tb[1]) - (ta[1] < tb[1])
        da = ta[1] if ta[0] < 4 else (ta[1].year, ta[1].month, ta[1].day)
        db = tb[1] if tb[0] < 4 else (tb[1].year, tb[1].month, tb[1].day)
        common = min(len(da), len(db))
        if da[:common] != db[:common]:
            return (da[:common] > db[:common]) - (da[:common] < db[:common])
        return 0 if len(da) == len(db) and ta[0] < 4 and tb[0] < 4 else None
    if ka == kb == "Time":
        try:
            x, y = time.fromisoformat(va), time.fromisoformat(vb)
        except (TypeError, ValueError):
            return None
        return (x > y) - (x < y)
    if ka == kb and ka in ("String", "Uri") and isinstance(va, str) and isinstance(vb, str):
        return (va > vb) - (va < vb)
    if ka == kb == "Quantity" and isinstance(va, dict) and isinstance(vb, dict):
        if not _same_unit(va, vb):
            return None
        na, nb = _number(va.get("value")), _number(vb.get("value"))
        if na is None or nb is None:
            return None
        return (na > nb) - (na < nb)
    return None


def _same_unit(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.get("code") or b.get("code"):
        return a.get("code") == b.get("code") and a.get("system") == b.get("system")
    return a.get("unit") == b.get("unit")


def values_equal(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    """Return whether two typed values are equal in the FHIR enableWhen/answerOption sense."""
    (ka, va), (kb, vb) = a, b
    if ka == kb == "Coding":
        if not isinstance(va, dict) or not isinstance(vb, dict):
            return False
        if va.get("code") is None or vb.get("code") is None:
            return (
                va.get("display") is not None
                and va.get("display") == vb.get("display")
                and va.get("code") == vb.get("code")
            )
        systems = va.get("system"), vb.get("system")
        return va.get("code") == vb.get("code") and (None in systems or systems[0] == systems[1])
    if ka == kb == "Reference":
        return (
            isinstance(va, dict)
            and isinstance(vb, dict)
            and va.get("reference") is not None
            and va.get("reference") == vb.get("reference")
        )
    if ka == kb == "Boolean":
        return va is vb
    if ka == kb == "Attachment":
        return False
    return compare_values(a, b) == 0


def show_value(typed: tuple[str, Any]) -> str:
    """Return a typed value as messages show it."""
    kind, value = typed
    if kind == "Coding" and isinstance(value, dict):
        return repr(value.get("display") or value.get("code"))
    if kind == "Quantity" and isinstance(value, dict):
        return f"{value.get('value')} {value.get('unit') or value.get('code') or ''}".strip()
    if kind == "Reference" and isinstance(value, dict):
        return repr(value.get("reference") or value.get("display"))
    if isinstance(value, str):
        return repr(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def show_options(options: list[tuple[str, Any]], limit: int = 8) -> str:
    """Return the first options as messages list them (``..., 3 more``)."""
    shown = ", ".join(show_value(o) for o in options[:limit])
    return shown + (f", ... {len(options) - limit} more" if len(options) > limit else "")

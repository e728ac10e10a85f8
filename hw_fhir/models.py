"""FHIR models: the one module that imports ``fhir.resources.R4B``.

Resources travel through hw-fhir as plain JSON dicts (FHIR R4 4.0.1 JSON, which
R4B models read and write unchanged for every resource used here). At every
boundary where a resource enters, :func:`validate` checks it against the R4B
model and the required code bindings and returns the normalised JSON dict.
Within :func:`validation_reused` (one /fhir write passing two validating layers:
the SDC Task workflow, then the store) a resource object validated once is not
validated again while its JSON text is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError

from .errors import InvalidResource, Issue
from .limits import check_structure

__all__ = [
    "FHIR_VERSION",
    "SUPPORTED_TYPES",
    "model_class",
    "to_model",
    "validate",
    "validation_reused",
    "validated_as_amended",
    "dump",
]

FHIR_VERSION = "4.0.1"

#: Resource types the store and the /fhir API serve.
SUPPORTED_TYPES: tuple[str, ...] = (
    "Questionnaire",
    "QuestionnaireResponse",
    "Task",
    "CarePlan",
    "Observation",
    "Communication",
    "CommunicationRequest",
    "Flag",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Group",
    "ValueSet",
    "CodeSystem",
    "CareTeam",
    "Subscription",
    "Binary",
)

# Required bindings (FHIR R4 "required" strength) that the R4B models do not enforce.
_REQUIRED_CODES: dict[str, dict[str, frozenset[str]]] = {
    "Task": {
        "status": frozenset(
            "draft requested received accepted rejected ready cancelled in-progress "
            "on-hold failed completed entered-in-error".split()
        ),
        "intent": frozenset(
            "unknown proposal plan order original-order reflex-order filler-order "
            "instance-order option".split()
        ),
        "priority": frozenset("routine urgent asap stat".split()),
    },
    "QuestionnaireResponse": {
        "status": frozenset("in-progress completed amended entered-in-error stopped".split()),
    },
    "Questionnaire": {
        "status": frozenset("draft active retired unknown".split()),
    },
    "CarePlan": {
        "status": frozenset(
            "draft active on-hold revoked completed entered-in-error unknown".split()
        ),
        "intent": frozenset("proposal plan order option".split()),
    },
    "Observation": {
        "status": frozenset(
            "registered preliminary final amended corrected cancelled entered-in-error "
            "unknown".split()
        ),
    },
    "Communication": {
        "status": frozenset(
            "preparation in-progress not-done on-hold stopped completed entered-in-error "
            "unknown".split()
        ),
        "priority": frozenset("routine urgent asap stat".split()),
    },
    "CommunicationRequest": {
        "status": frozenset(
            "draft active on-hold revoked completed entered-in-error unknown".split()
        ),
        "priority": frozenset("routine urgent asap stat".split()),
    },
    "Flag": {"status": frozenset("active inactive entered-in-error".split())},
    "Patient": {"gender": frozenset("male female other unknown".split())},
    "Practitioner": {"gender": frozenset("male female other unknown".split())},
    "Group": {"type": frozenset("person animal practitioner device medication substance".split())},
    "Subscription": {"status": frozenset("requested active error off".split())},
}

_ITEM_TYPES = frozenset(
    "group display boolean decimal integer date dateTime time string text url choice "
    "open-choice attachment reference quantity question".split()
)


def model_class(resource_type: str) -> type[FHIRAbstractModel]:
    """Return the R4B model class for a resource type name."""
    try:
        cls = get_fhir_model_class(resource_type)
    except (ValueError, TypeError) as exc:
        raise InvalidResource(f"Unknown resource type {resource_type!r}") from exc
    if not getattr(cls, "get_resource_type", None) or cls.get_resource_type() != resource_type:
        raise InvalidResource(f"{resource_type!r} is not a FHIR resource type")
    return cls


def to_model(resource: dict[str, Any]) -> FHIRAbstractModel:
    """Return the R4B model instance for a (valid) resource dict."""
    return model_class(str(resource.get("resourceType")))(**resource)


def dump(model: FHIRAbstractModel) -> dict[str, Any]:
    """Serialise a model to FHIR JSON (no ``None`` members)."""
    return model.model_dump(mode="json", exclude_none=True)


def _loc(resource_type: str, loc: tuple[Any, ...]) -> str:
    parts = [resource_type]
    for p in loc:
        if isinstance(p, int):
            parts[-1] += f"[{p}]"
        else:
            name = str(p)
            parts.append(name[:-5] if name.endswith("__ext") else name)
    return ".".join(parts)


def _code_issues(resource: dict[str, Any]) -> list[Issue]:
    rtype = resource["resourceType"]
    issues = []
    for element, allowed in _REQUIRED_CODES.get(rtype, {}).items():
        value = resource.get(element)
        if value is not None and value not in allowed:
            issues.append(
                Issue(
                    f"{value!r} is not a valid code for {rtype}.{element} "
                    f"(allowed: {', '.join(sorted(allowed))})",
                    code="code-invalid",
                    expression=f"{rtype}.{element}",
                )
            )
    if rtype == "Questionnaire":
        issues.extend(_item_type_issues(resource.get("item") or [], "Questionnaire"))
    return issues


def _item_type_issues(items: list[dict[str, Any]], path: str) -> list[Issue]:
    issues = []
    for n, item in enumerate(items):
        here = f"{path}.item[{n}]"
        if item.get("type") not in _ITEM_TYPES:
            issues.append(
                Issue(
                    f"{item.get('type')!r} is not a valid Questionnaire item type",
                    code="code-invalid",
                    expression=f"{here}.type",
                )
            )
        issues.extend(_item_type_issues(item.get("item") or [], here))
    return issues


@lru_cache(maxsize=None)
def _aliases(cls: type) -> dict[str, str]:
    return {f.alias or name: name for name, f in cls.model_fields.items()}


def _json_kind_ok(value: Any, parsed: Any) -> bool:
    if isinstance(parsed, bool):
        return isinstance(value, bool)
    if isinstance(parsed, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(parsed, (float, Decimal)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def _json_type_issues(value: Any, parsed: Any, path: str) -> list[Issue]:
    """Find JSON values the models accepted only by coercion ("5" for an integer, 1 for true).

    FHIR JSON is typed: the model's lax parsing must not let a string stand for a
    number or boolean, since the stored JSON is the input as given.
    """
    if isinstance(parsed, FHIRAbstractModel):
        if not isinstance(value, dict):
            return [Issue(f"{path}: expected a JSON object", code="structure", expression=path)]
        names = _aliases(type(parsed))
        issues = []
        for key, item in value.items():
            if key in ("resourceType", "fhir_comments"):
                continue
            name = names.get(key)
            if name is None:
                continue
            issues.extend(_json_type_issues(item, getattr(parsed, name), f"{path}.{key}"))
        return issues
    if isinstance(parsed, list):
        if not isinstance(value, list):
            return [Issue(f"{path}: expected a JSON array", code="structure", expression=path)]
        issues = []
        for n, (v, p) in enumerate(zip(value, parsed)):
            issues.extend(_json_type_issues(v, p, f"{path}[{n}]"))
        return issues
    if parsed is None or _json_kind_ok(value, parsed):
        return []
    want = ("a JSON boolean" if isinstance(parsed, bool) else
            "a JSON number" if isinstance(parsed, (int, float, Decimal)) else "a JSON string")
    return [Issue(f"{path}: must be {want}, not {value!r}", code="structure", expression=path)]


def validate(resource: Any, *, resource_type: str | None = None) -> dict[str, Any]:
    """Validate a resource dict against R4 and return its normalised JSON.

    Raise :class:`InvalidResource` listing every problem found (unknown
    elements, wrong types, missing required elements, invalid codes).
    ``resource_type``, when given, is the type the caller expects.
    """
    if not isinstance(resource, dict):
        raise InvalidResource("A resource must be a JSON object")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise InvalidResource(
            "The resource has no resourceType",
            issues=[Issue("The resource has no resourceType", code="required",
                          expression="resourceType")],
        )
    if resource_type is not None and rtype != resource_type:
        raise InvalidResource(
            f"Expected a {resource_type} but got a {rtype}",
            issues=[Issue(f"Expected a {resource_type} but got a {rtype}",
                          expression="resourceType")],
        )
    memo = _VALIDATED.get()
    if memo is not None and _validated_before(memo, resource):
        return dict(resource)
    data = _validated(resource, rtype)
    if memo is not None:
        text = _json_text(resource)
        if text is not None:
            memo[:] = [*memo[-(_MEMO_SIZE - 1):], (resource, text)]
    return data


#: Within :func:`validation_reused`: (resource object, its JSON text when it passed).
_VALIDATED: ContextVar[list[tuple[dict[str, Any], str]] | None] = ContextVar(
    "hw_fhir_validated", default=None)
#: Resources remembered per block (one request writes one resource, or a few).
_MEMO_SIZE = 8


@contextmanager
def validation_reused() -> Iterator[None]:
    """Within the block, :func:`validate` passes a resource object it passed before, unchanged.

    "Unchanged": the same object (``is``) with the same JSON text as when it passed;
    any other resource, or one changed since, is validated in full. The result is
    the same either way (validation depends on the resource alone).
    """
    token = _VALIDATED.set([])
    try:
        yield
    finally:
        _VALIDATED.reset(token)


def validated_as_amended(resource: dict[str, Any], base: dict[str, Any]) -> bool:
    """Within :func:`validation_reused`, validate ``resource``, a copy of ``base`` with some members
    changed, by what changed; return whether it did (False: nothing done, ``resource`` is
    validated in full where it enters the store).

    Done only when ``base`` passed :func:`validate` in this block and is unchanged since.
    Then a resource of ``resource``'s type holding the top-level members of ``resource``
    that differ from ``base``, plus every member the model checks together with others
    (required elements, the choices of a ``value[x]``) and every primitive one, is validated in
    full (any problem raises :class:`InvalidResource` naming the same elements), and
    ``resource`` is remembered as validated. The same result as validating ``resource`` in
    full: the members left out are ``base``'s, which passed, and the model, the code
    bindings and the JSON type check look at each of them on its own.
    """
    memo = _VALIDATED.get()
    rtype = resource.get("resourceType")
    if memo is None or not isinstance(rtype, str) or rtype != base.get("resourceType") \
            or not _validated_before(memo, base):
        return False
    coupled = _coupled_keys(rtype)
    changed = {key: value for key, value in resource.items()
               if key in coupled or not isinstance(value, (dict, list))
               or key not in base or base[key] != value}
    _validated(changed, rtype)
    text = _json_text(resource)
    if text is None:
        return False
    memo[:] = [*memo[-(_MEMO_SIZE - 1):], (resource, text)]
    return True


@lru_cache(maxsize=None)
def _coupled_keys(rtype: str) -> frozenset[str]:
    """JSON members the model checks together with others: required ones, ``[x]`` choices."""
    cls = model_class(rtype)
    blank = cls.model_construct()
    names = {name for name, field in cls.model_fields.items() if field.is_required()}
    names.update(n for pair in blank.get_required_fields() for n in pair if n)
    names.update(n for group in blank.get_one_of_many_fields().values() for n in group)
    keys = {"resourceType"}
    for name in names:
        field = cls.model_fields.get(name)
        key = (field.alias if field is not None and field.alias else name).removesuffix("__ext")
        keys.update({key, "_" + key.lstrip("_")})
    return frozenset(keys)


def _json_text(resource: dict[str, Any]) -> str | None:
    try:
        return json.dumps(resource, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None  # not plain JSON: never remembered


def _validated_before(memo: list[tuple[dict[str, Any], str]], resource: dict[str, Any]) -> bool:
    texts = [text for seen, text in memo if seen is resource]
    return bool(texts) and _json_text(resource) in texts


def _validated(resource: dict[str, Any], rtype: str) -> dict[str, Any]:
    """Check ``resource`` (a dict whose ``resourceType`` is ``rtype``) in full; see :func:`validate`."""
    check_structure(resource)  # NUL characters, nesting that would exhaust recursion
    cls = model_class(rtype)
    try:
        model = cls.model_validate(resource)
    except ValidationError as exc:
        issues = [
            Issue(
                f"{_loc(rtype, tuple(err['loc']))}: {err['msg']}",
                code="required" if "missing" in err["type"] else "structure",
                expression=_loc(rtype, tuple(err["loc"])),
            )
            for err in exc.errors()
        ]
        raise InvalidResource(f"Invalid {rtype}", issues=issues, resource=resource) from None
    except (ValueError, TypeError) as exc:
        raise InvalidResource(f"Invalid {rtype}: {exc}", resource=resource) from None
    type_issues = _json_type_issues(resource, model, rtype)
    if type_issues:
        raise InvalidResource(f"Invalid {rtype}", issues=type_issues, resource=resource)
    data = dict(resource)
    code_issues = _code_issues(data)
    if code_issues:
        raise InvalidResource(f"Invalid {rtype}", issues=code_issues, resource=resource)
    return data

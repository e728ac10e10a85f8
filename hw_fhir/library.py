"""The activity library in the store: load the shipped catalog, clone, edit, publish, retire.

Activities are Questionnaires named by their canonical ``url|version``; Tasks point at
that canonical, so a version that has been published (``status`` ``active``) is never
changed in place and old responses keep their meaning.

* :func:`load_catalog` writes the shipped catalog (:mod:`hw_fhir.catalog`) into a store,
  idempotently: a Questionnaire whose ``url|version`` is already stored is left as it is.
* :func:`clone_questionnaire` copies any activity into a clinician's own draft with a new
  url in the clinician's namespace
  (``http://hw-fhir.org/fhir/clinician/<practitioner-id>/Questionnaire/<slug>``),
  ``version`` ``1.0.0`` and ``derivedFrom`` = the source canonical. The clone also
  carries an ``identifier`` whose system is the clinician's namespace
  (:func:`clinician_system`), so ``Questionnaire?identifier=<system>|`` lists a
  clinician's own activities.
* :func:`edit_draft` replaces the content of a ``draft`` (and only a draft);
  :func:`new_version` starts the next draft version of a clinician's own activity.
* :func:`publish` makes a draft ``active``; :func:`retire` makes it ``retired``.

Every write is checked by :func:`check_questionnaire` first, so a Questionnaire cannot
be broken by an edit. The pure helpers :func:`find_item`, :func:`replace_item`,
:func:`add_item`, :func:`remove_item` and :func:`set_answer_options` edit a Questionnaire
dict (returning a changed copy) for :func:`edit_draft`.
"""

from __future__ import annotations

import copy
import re
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from . import catalog
from .errors import (
    BusinessRuleError,
    Conflict,
    InvalidInput,
    InvalidResource,
    Issue,
    NotFound,
    VersionConflict,
)
from .models import validate
from .responses import check_questionnaire as _response_issues
from .store.base import Store, iter_all

__all__ = [
    "CLINICIAN_BASE",
    "CatalogLoad",
    "load_catalog",
    "resolve_questionnaire",
    "clinician_system",
    "clinician_questionnaires",
    "questionnaire_titles",
    "check_questionnaire",
    "clone_questionnaire",
    "distinct_title",
    "check_title_free",
    "new_version",
    "edit_draft",
    "publish",
    "retire",
    "find_item",
    "replace_item",
    "add_item",
    "remove_item",
    "set_answer_options",
]

#: Base of the canonical urls of clinicians' own activities.
CLINICIAN_BASE = f"{catalog.CANONICAL_BASE}/clinician"

#: Fields an edit may not change (status changes go through publish/retire).
_FIXED_FIELDS = ("resourceType", "id", "url", "version", "status", "derivedFrom", "identifier")
_SLUG = re.compile(r"[^a-z0-9]+")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_CHOICE_TYPES = frozenset({"choice", "open-choice"})
_OPTION_TYPES = frozenset({"choice", "open-choice", "integer", "date", "time", "string"})
_LENGTH_TYPES = frozenset({"string", "text", "url", "open-choice"})
#: answer[x] of an enableWhen that fits the type of the question it names.
_ENABLE_WHEN_ANSWERS: Mapping[str, frozenset[str]] = {
    "boolean": frozenset({"answerBoolean"}),
    "integer": frozenset({"answerInteger"}),
    "decimal": frozenset({"answerDecimal"}),
    "date": frozenset({"answerDate"}),
    "dateTime": frozenset({"answerDateTime"}),
    "time": frozenset({"answerTime"}),
    "string": frozenset({"answerString"}),
    "text": frozenset({"answerString"}),
    "url": frozenset({"answerString"}),
    "choice": frozenset(
        {"answerCoding", "answerString", "answerInteger", "answerDate", "answerTime"}
    ),
    "open-choice": frozenset(
        {"answerCoding", "answerString", "answerInteger", "answerDate", "answerTime"}
    ),
    "quantity": frozenset({"answerQuantity"}),
    "reference": frozenset({"answerReference"}),
    "attachment": frozenset(),
}
#: answerOption.value[x] that fits each item type.
_OPTION_VALUES: Mapping[str, frozenset[str]] = {
    "choice": frozenset(
        {"valueCoding", "valueString", "valueInteger", "valueDate", "valueTime", "valueReference"}
    ),
    "open-choice": frozenset(
        {"valueCoding", "valueString", "valueInteger", "valueDate", "valueTime", "valueReference"}
    ),
    "integer": frozenset({"valueInteger"}),
    "date": frozenset({"valueDate"}),
    "time": frozenset({"valueTime"}),
    "string": frozenset({"valueString"}),
}


def _now(now: datetime | None) -> str:
    moment = now or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _canonical(questionnaire: Mapping[str, Any]) -> str:
    return catalog.canonical(questionnaire)


# -- the shipped catalog ------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogLoad:
    """What :func:`load_catalog` did: canonicals written and canonicals already there."""

    created: tuple[str, ...]
    existing: tuple[str, ...]


def _find(store: Store, url: str, version: str | None) -> list[dict[str, Any]]:
    canonicals = getattr(store, "canonicals", None)  # the SQL store's cache (store/canonicals)
    if canonicals is not None:
        return [found.resource for found in canonicals.find("Questionnaire", url, version)]
    params = [("url", url)]
    if version:
        params.append(("version", version))
    return iter_all(store, "Questionnaire", params)


def load_catalog(
    store: Store, questionnaires: Sequence[Mapping[str, Any]] | None = None
) -> CatalogLoad:
    """Write the shipped Questionnaires that are missing (by ``url|version``) in one transaction.

    A stored Questionnaire with the same ``url|version`` is never changed. A new one
    keeps its catalog id (``Questionnaire/phq-9``) unless that id is taken by another
    version, in which case the store assigns one.
    """
    items = list(questionnaires) if questionnaires is not None else catalog.load_questionnaires()
    created: list[str] = []
    existing: list[str] = []
    entries: list[dict[str, Any]] = []
    for questionnaire in items:
        ref = _canonical(questionnaire)
        if _find(store, questionnaire["url"], questionnaire.get("version")):
            existing.append(ref)
            continue
        resource = {k: v for k, v in questionnaire.items() if k != "meta"}
        rid = resource.get("id")
        if rid and not _id_taken(store, rid):
            entries.append(
                {"resource": resource, "request": {"method": "PUT", "url": f"Questionnaire/{rid}"}}
            )
        else:
            resource.pop("id", None)
            criteria = urlencode(
                [("url", resource["url"]), ("version", resource.get("version", ""))]
            )
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": resource,
                    "request": {"method": "POST", "url": "Questionnaire", "ifNoneExist": criteria},
                }
            )
        created.append(ref)
    if entries:
        store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return CatalogLoad(created=tuple(created), existing=tuple(existing))


def _id_taken(store: Store, rid: str) -> bool:
    try:
        store.read("Questionnaire", rid)
    except NotFound:  # includes Gone: a deleted id is not reused
        return False
    return True


# -- finding Questionnaires -----------------------------------------------------------------


def _version_key(version: str | None) -> tuple[Any, ...]:
    parts = str(version or "").split(".")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def resolve_questionnaire(store: Store, ref: str) -> dict[str, Any]:
    """Return the stored Questionnaire named by ``url|version``, ``url``, reference or id.

    A bare ``url`` means its newest ``active`` version. Raise NotFound.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput("A questionnaire reference is required")
    ref = ref.strip()
    if "://" not in ref and not ref.startswith("urn:"):
        rid = ref.split("/", 1)[1] if ref.startswith("Questionnaire/") else ref
        if not _ID.match(rid):
            raise InvalidInput(f"{ref!r} is not a Questionnaire id, reference or canonical url")
        return store.read("Questionnaire", rid).resource
    url, bar, version = ref.partition("|")
    if bar and version:
        found = _find(store, url, version)
        if not found:
            raise NotFound(f"No Questionnaire {ref} is stored")
        return found[0]
    active = [q for q in _find(store, url, None) if q.get("status") == "active"]
    if not active:
        raise NotFound(f"No active version of Questionnaire {url} is stored")
    return max(active, key=lambda q: _version_key(q.get("version")))


def clinician_system(practitioner: str) -> str:
    """Return the identifier system (and url namespace) of a clinician's own activities."""
    return f"{CLINICIAN_BASE}/{_practitioner_id(practitioner)}/Questionnaire"


def clinician_questionnaires(
    store: Store, practitioner: str, status: str | None = None
) -> list[dict[str, Any]]:
    """Return a clinician's own Questionnaires (every version), optionally of one status."""
    params = [("identifier", f"{clinician_system(practitioner)}|")]
    if status:
        params.append(("status", status))
    found = iter_all(store, "Questionnaire", params)
    return sorted(found, key=lambda q: (q.get("url", ""), _version_key(q.get("version"))))


def _practitioner_id(practitioner: str) -> str:
    pid = (
        practitioner.split("/", 1)[1] if practitioner.startswith("Practitioner/") else practitioner
    )
    if "/" in pid or not _ID.match(pid):
        raise InvalidInput(f"{practitioner!r} is not a Practitioner id or reference")
    return pid


# -- checking a Questionnaire -------------------------------------------------------------


def _walk(items: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for n, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict):
            here = f"{path}.item[{n}]"
            yield here, item
            yield from _walk(item.get("item"), here)


def _value_key(element: Mapping[str, Any], prefix: str) -> str | None:
    keys = [k for k in element if k.startswith(prefix) and k != prefix]
    return keys[0] if len(keys) == 1 else None


def _item_issues(path: str, item: dict[str, Any]) -> list[Issue]:
    """Return the problems of one item on its own (not its enableWhen)."""
    issues: list[Issue] = []
    kind = item.get("type")
    options = item.get("answerOption") or []
    children = item.get("item") or []
    if kind == "group" and not children:
        issues.append(Issue("A group item needs at least one item inside (que-1)", expression=path))
    if kind == "display" and children:
        issues.append(Issue("A display item cannot contain items (que-1)", expression=path))
    if kind == "display" and not item.get("text"):
        issues.append(Issue("A display item needs text", expression=f"{path}.text"))
    if kind in _CHOICE_TYPES and not options and not item.get("answerValueSet"):
        issues.append(Issue(f"A {kind} item needs answerOption or answerValueSet", expression=path))
    if options and item.get("answerValueSet"):
        issues.append(
            Issue(
                "An item cannot have both answerOption and answerValueSet (que-4)", expression=path
            )
        )
    if item.get("answerValueSet") and kind not in _CHOICE_TYPES:
        issues.append(
            Issue(
                f"Only choice and open-choice items can have answerValueSet, not {kind} (que-5)",
                expression=f"{path}.answerValueSet",
            )
        )
    if options and kind not in _OPTION_TYPES:
        issues.append(
            Issue(f"A {kind} item cannot have answerOption", expression=f"{path}.answerOption")
        )
    elif options:
        issues.extend(_option_issues(path, str(kind), options))
    if "maxLength" in item and kind not in _LENGTH_TYPES:
        issues.append(
            Issue(
                f"maxLength only applies to text items, not {kind} (que-10)",
                expression=f"{path}.maxLength",
            )
        )
    if isinstance(item.get("linkId"), str) and len(item["linkId"]) > 255:
        issues.append(Issue("linkId is longer than 255 characters", expression=f"{path}.linkId"))
    return issues


def _option_issues(path: str, kind: str, options: list[Any]) -> list[Issue]:
    issues: list[Issue] = []
    seen: set[str] = set()
    for n, option in enumerate(options):
        where = f"{path}.answerOption[{n}]"
        key = _value_key(option, "value") if isinstance(option, dict) else None
        if key is None:
            issues.append(Issue("An answerOption needs exactly one value[x]", expression=where))
            continue
        if key not in _OPTION_VALUES.get(kind, frozenset()):
            issues.append(Issue(f"{key} does not fit a {kind} item", expression=f"{where}.{key}"))
        value = option[key]
        ident = (
            f"{value.get('system')}|{value.get('code')}" if isinstance(value, dict) else repr(value)
        )
        if isinstance(value, dict) and key == "valueCoding" and not value.get("code"):
            issues.append(
                Issue("An answer option coding needs a code", expression=f"{where}.{key}")
            )
        if ident in seen:
            issues.append(
                Issue(f"The answer option {_show(value)} is listed twice", expression=where)
            )
        seen.add(ident)
    return issues


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return repr(value.get("display") or value.get("code") or value.get("reference"))
    return repr(value)


def _enable_when_issues(
    path: str, item: dict[str, Any], index: Mapping[str, dict[str, Any]]
) -> list[Issue]:
    """Return the problems of an item's enableWhen the response validator does not report."""
    issues: list[Issue] = []
    for n, condition in enumerate(item.get("enableWhen") or []):
        if not isinstance(condition, dict):
            continue
        where = f"{path}.enableWhen[{n}]"
        question = index.get(str(condition.get("question")))  # unknown: reported elsewhere
        if question is None:
            continue
        if condition.get("question") == item.get("linkId"):
            issues.append(
                Issue("An item cannot be enabled by its own answer", expression=f"{where}.question")
            )
            continue
        kind = str(question.get("type"))
        if kind in ("group", "display"):
            issues.append(
                Issue(
                    f"enableWhen names {condition['question']!r}, a {kind} item that has no answer",
                    expression=f"{where}.question",
                )
            )
            continue
        key = _value_key(condition, "answer")
        if condition.get("operator") == "exists" or key is None:
            continue
        if key not in _ENABLE_WHEN_ANSWERS.get(kind, frozenset()):
            issues.append(
                Issue(
                    f"enableWhen compares the {kind} question {condition['question']!r} with {key}",
                    expression=f"{where}.{key}",
                )
            )
        elif key == "answerCoding" and question.get("answerOption"):
            codes = {
                (o["valueCoding"].get("system"), o["valueCoding"].get("code"))
                for o in question["answerOption"]
                if isinstance(o, dict) and isinstance(o.get("valueCoding"), dict)
            }
            wanted = condition[key]
            if codes and (wanted.get("system"), wanted.get("code")) not in codes:
                issues.append(
                    Issue(
                        f"enableWhen expects {_show(wanted)}, which is not an answer "
                        f"option of {condition['question']!r}",
                        expression=f"{where}.{key}",
                    )
                )
    return issues


def check_questionnaire(questionnaire: Any) -> dict[str, Any]:
    """Check that a Questionnaire is valid R4 and well formed; return it normalised.

    Besides R4 validation: url, version and at least one item are required; linkIds
    are present and unique; enableWhen names an existing, answerable question (not
    itself) with an answer of the right type; choice items have options; groups have
    items and display items have text and none; answerOption/answerValueSet/maxLength
    only where they apply; options are not repeated. Raise :class:`InvalidResource`
    listing every problem.
    """
    data = validate(questionnaire, resource_type="Questionnaire")
    issues: list[Issue] = []
    for key in ("url", "version"):
        if not data.get(key):
            issues.append(
                Issue(
                    f"A library activity needs a {key}",
                    code="required",
                    expression=f"Questionnaire.{key}",
                )
            )
    if not data.get("item"):
        issues.append(
            Issue(
                "A Questionnaire needs at least one item",
                code="required",
                expression="Questionnaire.item",
            )
        )
    issues.extend(_response_issues(data))
    index = {
        item["linkId"]: item
        for _, item in _walk(data.get("item"), "Questionnaire")
        if isinstance(item.get("linkId"), str)
    }
    for path, item in _walk(data.get("item"), "Questionnaire"):
        issues.extend(_item_issues(path, item))
        issues.extend(_enable_when_issues(path, item, index))
    if issues:
        raise InvalidResource(
            f"The Questionnaire is not well formed ({len(issues)} problem"
            f"{'s' if len(issues) > 1 else ''}): {issues[0].message}",
            issues=issues,
            resource=questionnaire,
        )
    return data


# -- clone, edit, publish, retire ---------------------------------------------------------


def _slugify(text: str) -> str:
    slug = _SLUG.sub("-", text.lower()).strip("-")
    return slug[:48].strip("-") or "activity"


def _unique_slug(store: Store, system: str, base: str) -> str:
    slug, n = base, 1
    while iter_all(store, "Questionnaire", [("identifier", f"{system}|{slug}")]):
        n += 1
        slug = f"{base}-{n}"
    return slug


def _name(title: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", title)
    name = "".join(w[:1].upper() + w[1:] for w in words)
    if not name or not name[0].isalpha():
        name = "Activity" + name
    return name[:100]


def distinct_title(store: Store, wanted: str) -> str:
    """Return ``wanted``, or ``wanted (2)``… if an assignable activity already has that title."""
    taken = {q.get("title") for q in iter_all(store, "Questionnaire", [("status", "draft,active")])}
    title, n = wanted, 1
    while title in taken:
        n += 1
        title = f"{wanted[:-1]} {n})" if wanted.endswith(" (copy)") else f"{wanted} ({n})"
    return title


def check_title_free(store: Store, title: str | None, questionnaire_id: str) -> None:
    """Refuse (InvalidInput) a title another assignable activity already has."""
    others = iter_all(store, "Questionnaire", [("status", "draft,active")]) if title else []
    if any(q.get("title") == title and q.get("id") != questionnaire_id for q in others):
        raise InvalidInput(f"Another activity is already called {title!r}: choose another title, "
                           "so the two can be told apart when assigning",
                           issues=[Issue(f"Another activity is already called {title!r}",
                                         expression="title")])


def clone_questionnaire(
    store: Store,
    source: str,
    *,
    practitioner: str,
    title: str | None = None,
    slug: str | None = None,
    publisher: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Copy an activity into the clinician's own ``draft``; return the stored clone.

    ``source`` is anything :func:`resolve_questionnaire` accepts. The clone gets the url
    ``<clinician namespace>/<slug>`` (slug from ``slug`` or the title, made unique),
    version ``1.0.0``, ``derivedFrom`` the source's ``url|version`` and status ``draft``.
    """
    original = resolve_questionnaire(store, source)
    system = clinician_system(practitioner)
    base = _slugify(slug or title or original.get("title") or original.get("name") or "activity")
    slug_value = _unique_slug(store, system, base)
    clone = {
        k: copy.deepcopy(v)
        for k, v in original.items()
        if k
        not in (
            "id",
            "meta",
            "identifier",
            "text",
            "publisher",
            "date",
            "status",
            "derivedFrom",
            "url",
            "version",
            "experimental",
        )
    }
    clone_title = distinct_title(store, title or f"{original.get('title') or slug_value} (copy)")
    clone.update(
        resourceType="Questionnaire",
        url=f"{system}/{slug_value}",
        identifier=[{"system": system, "value": slug_value}],
        version="1.0.0",
        name=_name(clone_title),
        title=clone_title,
        status="draft",
        derivedFrom=[_canonical(original)],
        date=_now(now),
    )
    if publisher:
        clone["publisher"] = publisher
    data = check_questionnaire(clone)
    return store.create(data).resource


def _next_version(version: str) -> str:
    parts = version.split(".")
    if all(p.isdigit() for p in parts):
        position = 1 if len(parts) >= 2 else 0
        bumped = [*parts[:position], str(int(parts[position]) + 1)]
        return ".".join(bumped + ["0"] * (len(parts) - len(bumped)))
    return f"{version}.1"


def new_version(
    store: Store, questionnaire_id: str, *, version: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Start the next ``draft`` version of a clinician's own published activity.

    The draft keeps the url; ``version`` defaults to the next minor version above every
    stored version of that url. Refused when a draft of that url exists already.
    """
    current = store.read("Questionnaire", questionnaire_id).resource
    url = current.get("url", "")
    if not url.startswith(CLINICIAN_BASE + "/"):
        raise BusinessRuleError(f"{url} is a library activity; clone it to make your own version")
    versions = _find(store, url, None)
    drafts = [q for q in versions if q.get("status") == "draft"]
    if drafts:
        raise Conflict(
            f"{url} already has a draft (Questionnaire/{drafts[0]['id']}, version "
            f"{drafts[0].get('version')}); edit or publish it first"
        )
    newest = max((q.get("version", "") for q in versions), key=_version_key)
    version = version or _next_version(newest)
    if any(q.get("version") == version for q in versions):
        raise Conflict(f"{url}|{version} exists already")
    draft = {k: copy.deepcopy(v) for k, v in current.items() if k not in ("id", "meta", "text")}
    draft.update(version=version, status="draft", date=_now(now))
    return store.create(check_questionnaire(draft)).resource


def _stored(store: Store, questionnaire_id: str) -> tuple[dict[str, Any], str]:
    rid = (
        questionnaire_id.split("/", 1)[1]
        if questionnaire_id.startswith("Questionnaire/")
        else questionnaire_id
    )
    stored = store.read("Questionnaire", rid)
    return stored.resource, stored.version_id


def _check_expected(version_id: str, if_match: str | None, ref: str) -> str:
    if if_match is None:
        return f'W/"{version_id}"'
    wanted = if_match.strip().removeprefix("W/").strip('"')
    if wanted != version_id:
        raise VersionConflict(
            f"{ref} is at version {version_id}, not {wanted}", current_version=version_id
        )
    return f'W/"{version_id}"'


def edit_draft(
    store: Store,
    questionnaire_id: str,
    questionnaire: Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]],
    *,
    if_match: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Replace the content of a ``draft`` Questionnaire; return the stored version.

    ``questionnaire`` is the edited resource, or a function that takes a copy of the
    current one and returns the edited one. url, version, status, derivedFrom and
    identifier cannot change here. Refused (BusinessRuleError) unless the stored
    Questionnaire is a draft; VersionConflict when ``if_match`` is not current.
    """
    current, version_id = _stored(store, questionnaire_id)
    ref = f"Questionnaire/{current['id']}"
    etag = _check_expected(version_id, if_match, ref)
    if current.get("status") != "draft":
        raise BusinessRuleError(
            f"{ref} ({_canonical(current)}) is {current.get('status')}; only a draft can be "
            "edited. Start a new version or clone it."
        )
    edited = dict(
        questionnaire(copy.deepcopy(current))
        if callable(questionnaire)
        else copy.deepcopy(dict(questionnaire))
    )
    edited.pop("meta", None)
    changed = [
        key
        for key in _FIXED_FIELDS
        if key in edited and key != "id" and edited.get(key) != current.get(key)
    ]
    if edited.get("id") not in (None, current["id"]):
        changed.append("id")
    if changed:
        raise BusinessRuleError(
            f"An edit cannot change {', '.join(changed)} of {ref}",
            issues=[
                Issue(
                    f"{key} cannot be changed by an edit",
                    code="business-rule",
                    expression=f"Questionnaire.{key}",
                )
                for key in changed
            ],
        )
    edited.update({key: copy.deepcopy(current[key]) for key in _FIXED_FIELDS if key in current})
    edited["date"] = _now(now)
    return store.update(check_questionnaire(edited), if_match=etag).resource


def publish(
    store: Store, questionnaire_id: str, *, if_match: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Make a draft ``active`` (assignable); return the stored Questionnaire."""
    current, version_id = _stored(store, questionnaire_id)
    ref = f"Questionnaire/{current['id']}"
    etag = _check_expected(version_id, if_match, ref)
    if current.get("status") != "draft":
        raise BusinessRuleError(f"{ref} is {current.get('status')}; only a draft can be published")
    others = [
        q for q in _find(store, current["url"], current.get("version")) if q["id"] != current["id"]
    ]
    if others:
        raise Conflict(
            f"{_canonical(current)} is already stored as Questionnaire/{others[0]['id']}"
        )
    published = dict(current, status="active", date=_now(now))
    published.pop("meta", None)
    return store.update(check_questionnaire(published), if_match=etag).resource


def retire(
    store: Store, questionnaire_id: str, *, if_match: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Make a Questionnaire ``retired`` (no longer assignable); retiring twice is a no-op."""
    current, version_id = _stored(store, questionnaire_id)
    etag = _check_expected(version_id, if_match, f"Questionnaire/{current['id']}")
    if current.get("status") == "retired":
        return current
    retired = dict(current, status="retired", date=_now(now))
    retired.pop("meta", None)
    return store.update(validate(retired), if_match=etag).resource


# -- pure editing helpers -----------------------------------------------------------------


def _items_with_parent(items: list[dict[str, Any]]) -> Iterator[tuple[list[dict[str, Any]], int]]:
    for n, item in enumerate(items):
        yield items, n
        if isinstance(item.get("item"), list):
            yield from _items_with_parent(item["item"])


def _locate(questionnaire: dict[str, Any], link_id: str) -> tuple[list[dict[str, Any]], int]:
    for siblings, n in _items_with_parent(questionnaire.get("item") or []):
        if siblings[n].get("linkId") == link_id:
            return siblings, n
    raise NotFound(f"The Questionnaire has no item {link_id!r}")


def find_item(questionnaire: Mapping[str, Any], link_id: str) -> dict[str, Any]:
    """Return (a copy of) the item with this linkId, at any depth; NotFound."""
    siblings, n = _locate(copy.deepcopy(dict(questionnaire)), link_id)
    return siblings[n]


def replace_item(questionnaire: Mapping[str, Any], link_id: str, **changes: Any) -> dict[str, Any]:
    """Return a copy with the item's elements changed (a value of None removes the element)."""
    edited = copy.deepcopy(dict(questionnaire))
    siblings, n = _locate(edited, link_id)
    item = dict(siblings[n])
    for key, value in changes.items():
        if value is None:
            item.pop(key, None)
        else:
            item[key] = copy.deepcopy(value)
    siblings[n] = item
    return edited


def add_item(
    questionnaire: Mapping[str, Any],
    item: Mapping[str, Any],
    *,
    parent: str | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """Return a copy with ``item`` added under ``parent`` (top level when None), after ``after``."""
    edited = copy.deepcopy(dict(questionnaire))
    if parent is None:
        siblings = edited.setdefault("item", [])
    else:
        holder_list, n = _locate(edited, parent)
        siblings = holder_list[n].setdefault("item", [])
    position = len(siblings)
    if after is not None:
        matches = [k for k, sibling in enumerate(siblings) if sibling.get("linkId") == after]
        if not matches:
            raise NotFound(f"No item {after!r} at that level to add after")
        position = matches[0] + 1
    siblings.insert(position, copy.deepcopy(dict(item)))
    return edited


def remove_item(questionnaire: Mapping[str, Any], link_id: str) -> dict[str, Any]:
    """Return a copy without the item (and its children)."""
    edited = copy.deepcopy(dict(questionnaire))
    siblings, n = _locate(edited, link_id)
    del siblings[n]
    return edited


def set_answer_options(
    questionnaire: Mapping[str, Any],
    link_id: str,
    options: Sequence[Any],
    *,
    system: str | None = None,
) -> dict[str, Any]:
    """Return a copy whose item offers these options.

    An option is an ``answerOption`` dict, a ``(code, display)`` pair (a Coding in
    ``system``) or a plain string/integer value.
    """
    built = []
    for option in options:
        if isinstance(option, Mapping):
            built.append(dict(option))
        elif isinstance(option, tuple) and len(option) == 2:
            coding = {"code": str(option[0]), "display": str(option[1])}
            if system:
                coding = {"system": system, **coding}
            built.append({"valueCoding": coding})
        elif isinstance(option, bool):
            raise InvalidInput("A boolean cannot be an answer option; use a boolean item")
        elif isinstance(option, int):
            built.append({"valueInteger": option})
        elif isinstance(option, str):
            built.append({"valueString": option})
        else:
            raise InvalidInput(f"{option!r} is not an answer option")
    return replace_item(questionnaire, link_id, answerOption=built, answerValueSet=None)


#: Per store: ``url|version`` → the title and name of that Questionnaire version. A stored
#: version's content never changes once it can be assigned, so its title can be kept.
_TITLES: "weakref.WeakKeyDictionary[Any, dict[str, dict[str, Any]]]" = weakref.WeakKeyDictionary()


def questionnaire_titles(store: Store, refs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Return ``{ref: {"title", "name"}}`` for canonical refs (``url|version`` or ``url``).

    Versioned refs are remembered per store; the others cost one search per url.
    """
    try:
        cache = _TITLES.setdefault(store, {})
    except TypeError:  # a store that cannot be weakly referenced: no cache
        cache = {}
    wanted = {ref for ref in refs if ref and "://" in ref}
    out = {ref: cache[ref] for ref in wanted if ref in cache}
    for url in {ref.partition("|")[0] for ref in wanted - set(out)}:
        for q in iter_all(store, "Questionnaire", [("url", url)]):
            brief = {"title": q.get("title"), "name": q.get("name")}
            key = f"{url}|{q.get('version')}" if q.get("version") else url
            if q.get("status") in ("active", "retired") and q.get("version"):
                cache[key] = brief
            out[key] = brief
            out.setdefault(url, brief)
    return out

"""A clinician's own activities: clone, edit a draft, start a new version, publish, retire.

A version that has been published (``status`` ``active``) is never changed in place, so
Tasks naming its ``url|version`` and old responses keep their meaning.

* :func:`clone_questionnaire` copies any activity into a clinician's own draft with a new
  url in the clinician's namespace, ``version`` ``1.0.0`` and ``derivedFrom`` = the source.
* :func:`edit_draft` replaces the content of a ``draft`` (and only a draft);
  :func:`new_version` starts the next draft version of a clinician's own activity.
* :func:`publish` makes a draft ``active``; :func:`retire` makes it ``retired``.
* :func:`distinct_title`, :func:`check_title_free` keep assignable titles apart.

Every write is checked by :func:`~hw_fhir.library.checks.check_questionnaire` first.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from .. import catalog
from ..errors import BusinessRuleError, Conflict, InvalidInput, Issue, VersionConflict
from ..models import validate
from ..store.base import Store, iter_all
from .checks import check_questionnaire
from .lookup import (
    CLINICIAN_BASE,
    clinician_system,
    find_versions,
    resolve_questionnaire,
    version_key,
)

__all__ = [
    "clone_questionnaire",
    "distinct_title",
    "check_title_free",
    "new_version",
    "edit_draft",
    "publish",
    "retire",
]

#: Fields an edit may not change (status changes go through publish/retire).
_FIXED_FIELDS = ("resourceType", "id", "url", "version", "status", "derivedFrom", "identifier")
_SLUG = re.compile(r"[^a-z0-9]+")


def _now(now: datetime | None) -> str:
    moment = now or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        derivedFrom=[catalog.canonical(original)],
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
    versions = find_versions(store, url, None)
    drafts = [q for q in versions if q.get("status") == "draft"]
    if drafts:
        raise Conflict(
            f"{url} already has a draft (Questionnaire/{drafts[0]['id']}, version "
            f"{drafts[0].get('version')}); edit or publish it first"
        )
    newest = max((q.get("version", "") for q in versions), key=version_key)
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
            f"{ref} ({catalog.canonical(current)}) is {current.get('status')}; only a draft can be "
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
        q
        for q in find_versions(store, current["url"], current.get("version"))
        if q["id"] != current["id"]
    ]
    if others:
        raise Conflict(
            f"{catalog.canonical(current)} is already stored as Questionnaire/{others[0]['id']}"
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

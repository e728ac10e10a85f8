"""The SDC Task workflow for QuestionnaireResponses written through the FHIR API.

An outside form filler (a patient app, an SDC filler) that posts or puts a
QuestionnaireResponse answering a homework Task closes that Task exactly as the
patient pages do: the write goes through :func:`hw_fhir.completion.record_answer`,
so the response and the Task are one transaction — a ``completed`` response makes
the Task ``completed`` with ``output`` (type ``questionnaire-response``) → the
response and ``executionPeriod``; an ``in-progress`` one makes it ``in-progress``.

Which Task a response answers, first match wins:

1. ``basedOn`` → ``Task/<id>`` (the SDC convention of form fillers working a Task);
2. the identifier ``http://hw-fhir.org/fhir/sid/task-response|<task id>``, on the
   response sent or on the stored response it replaces;
3. an open Task of the response's ``subject`` whose ``questionnaire`` input is the
   response's ``questionnaire`` (``url|version``, or ``url`` alone): the one whose
   draft this is, else an ``in-progress`` one, else the one due first.

In a ``transaction`` Bundle (:func:`write_bundle`) each response entry answering a Task
gets that Task's write added to the same transaction (unless the Bundle writes the
Task itself); the transaction-response lists only the entries sent. A response
answering no Task is written as before (``None`` is returned). The Task
must be for the response's ``subject`` (a response for another patient's Task is
:class:`~hw_fhir.errors.Forbidden`) and still open; the response is validated
against the Task's Questionnaire version. The caller's own rights over the
response are checked by ``authorize`` (the /fhir facade passes its scope guard);
the Task is then changed by the server as a consequence of that write, like the
scores recorded after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from .assignment import OPEN_STATUSES, instant, status_entry, task_canonical, task_due, utc_now
from .completion import (
    RESPONSE_TASK_SYSTEM,
    advance_task,
    check_open,
    publish_answer,
    record_answer,
    response_for_task,
    task_output,
    task_questionnaire,
)
from .errors import BusinessRuleError, Forbidden, Gone, InvalidResource, Issue, NotFound, VersionConflict
from .events import Events
from .models import validate, validated_as_amended
from .responses import validate_response
from .store.base import Store, Stored, WriteResult

__all__ = ["WORKFLOW_STATUSES", "answered_task", "write_response", "write_bundle"]

#: Response statuses that move a Task on (``completed`` closes it).
WORKFLOW_STATUSES = frozenset({"in-progress", "completed"})
#: Task statuses a response can still be written for (``on-hold`` is paused by the clinician).
_WORKABLE = sorted(OPEN_STATUSES - {"on-hold"})

Authorize = Callable[[dict[str, Any]], "str | None"]
AuthorizeBundle = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def _current(store: Store, rid: str | None) -> Stored | None:
    if not rid:
        return None
    try:
        return store.read("QuestionnaireResponse", rid)
    except (NotFound, Gone):
        return None


def _task_from_reference(response: Mapping[str, Any]) -> str | None:
    for ref in response.get("basedOn") or []:
        value = str((ref or {}).get("reference") or "")
        parts = [p for p in urlsplit(value).path.split("/") if p]
        if len(parts) >= 2 and parts[-2] == "Task":
            return parts[-1]
    return None


def _task_from_identifier(response: Mapping[str, Any] | None) -> str | None:
    identifier = (response or {}).get("identifier") or {}
    if isinstance(identifier, Mapping) and identifier.get("system") == RESPONSE_TASK_SYSTEM:
        return str(identifier.get("value") or "") or None
    return None


def _same_questionnaire(task: Mapping[str, Any], canonical: str) -> bool:
    wanted = task_canonical(task) or ""
    if "|" in canonical:
        return wanted == canonical
    return wanted == canonical or wanted.startswith(canonical + "|")


def _matching_task(store: Store, response: Mapping[str, Any], rid: str | None) -> dict[str, Any] | None:
    subject = str((response.get("subject") or {}).get("reference") or "")
    canonical = str(response.get("questionnaire") or "")
    if not subject.startswith("Patient/") or not canonical:
        return None
    found = store.search("Task", [("patient", subject), ("status", ",".join(_WORKABLE)),
                                  ("_count", "200"), ("_total", "none")])  # no count asked
    tasks = [m.resource for m in found.matches if _same_questionnaire(m.resource, canonical)]
    if not tasks:
        return None

    def rank(task: dict[str, Any]) -> tuple[int, int, str, str]:
        draft = response_for_task(store, task["id"]) if rid else None
        due = task_due(task)
        return (0 if draft is not None and draft.get("id") == rid else 1,
                0 if task.get("status") == "in-progress" else 1,
                due.isoformat() if due else "9999", str(task.get("authoredOn") or ""))

    return min(tasks, key=rank)


def answered_task(store: Store, response: Mapping[str, Any],
                  current: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Return the Task a response answers (see the module notes), or None."""
    named = _task_from_reference(response) or _task_from_identifier(response) \
        or _task_from_identifier(current)
    if named:
        try:
            return store.read("Task", named).resource
        except (NotFound, Gone):
            if _task_from_reference(response):
                raise BusinessRuleError(f"basedOn names Task/{named}, which does not exist") from None
            return None
    return _matching_task(store, response, (current or {}).get("id"))


def _prepared(response: dict[str, Any], task: Mapping[str, Any], now: datetime | None) -> dict[str, Any]:
    patient = (task.get("for") or {}).get("reference")
    identifier = response.get("identifier")
    ours = {"system": RESPONSE_TASK_SYSTEM, "value": task["id"]}
    if identifier and not (isinstance(identifier, Mapping) and identifier.get("system") == RESPONSE_TASK_SYSTEM
                           and identifier.get("value") == task["id"]):
        raise InvalidResource(
            f"A response answering Task/{task['id']} carries the identifier "
            f"{RESPONSE_TASK_SYSTEM}|{task['id']}; leave identifier out",
            issues=[Issue("identifier is set by the server for a response answering a Task",
                          expression="QuestionnaireResponse.identifier")])
    profile = (response.get("meta") or {}).get("profile")
    prepared = {k: v for k, v in response.items() if k != "meta"}
    if profile:
        prepared["meta"] = {"profile": list(profile)}
    prepared.update(identifier=ours, subject=response.get("subject") or {"reference": patient})
    if task.get("encounter") and not prepared.get("encounter"):
        prepared["encounter"] = dict(task["encounter"])
    if not prepared.get("authored"):
        prepared["authored"] = instant(utc_now(now))
    return prepared


def _check_subject(prepared: Mapping[str, Any], task: Mapping[str, Any]) -> None:
    """Refuse a response about another patient than the Task's (after the caller's own checks)."""
    subject = (prepared.get("subject") or {}).get("reference")
    if subject != (task.get("for") or {}).get("reference"):
        raise Forbidden(f"Task/{task['id']} is homework of another patient than {subject}")


def _as_sent(prepared: dict[str, Any], sent: Mapping[str, Any]) -> dict[str, Any]:
    """The prepared response with the identifier the client sent (the server's is hw-fhir's own)."""
    out = {k: v for k, v in prepared.items() if k != "identifier"}
    if "identifier" in sent:
        out["identifier"] = sent["identifier"]
    return out


def write_response(store: Store, response: dict[str, Any], *, if_match: str | None = None,
                   if_none_exist: str | None = None, authorize: Authorize | None = None,
                   events: Events | None = None, now: datetime | None = None) -> WriteResult | None:
    """Write a response that answers a Task together with the Task; None when it answers none.

    ``response`` is the resource sent (with an ``id`` for an update). ``authorize``
    is called with it before anything is written and raises when the caller may not
    write it; it may return the version (ETag) the write must replace. A conditional
    create (``if_none_exist``) and responses of other statuses (amendments,
    ``entered-in-error``) return None: they are plain writes.
    """
    if response.get("status") not in WORKFLOW_STATUSES or if_none_exist:
        return None
    validate(response, resource_type="QuestionnaireResponse")  # InvalidResource before any lookup
    current = _current(store, response.get("id"))
    task = answered_task(store, response, current.resource if current else None)
    if task is None:
        return None
    if current is not None and _task_from_identifier(current.resource) not in (None, task["id"]):
        raise BusinessRuleError(f"QuestionnaireResponse/{current.id} answers another Task")
    existing = response_for_task(store, task["id"])
    if task.get("status") == "completed" and existing is not None and existing.get("id") == response.get("id"):
        return None  # a correction of the submitted response: a plain write
    check_open(task)
    if existing is not None and response.get("id") and existing["id"] != response["id"]:
        raise BusinessRuleError(f"Task/{task['id']} is answered by QuestionnaireResponse/"
                                f"{existing['id']}; update that response")
    if existing is not None and existing.get("status") != "in-progress":
        raise BusinessRuleError(f"Task/{task['id']} has a submitted response; amend it instead")
    prepared = _prepared(response, task, now)
    if existing is not None:
        prepared["id"] = existing["id"]
    # the sent response passed above: only the server's additions are checked (the store
    # then reuses this within the /fhir request's validation_reused block)
    validated_as_amended(prepared, response)
    pinned = authorize(_as_sent(prepared, response)) if authorize is not None else None
    _check_subject(prepared, task)
    wanted = (if_match or pinned or "").strip() or None
    replaced = current.version_id if current is not None else \
        (existing or {}).get("meta", {}).get("versionId")
    if wanted and replaced and wanted != f'W/"{replaced}"':
        raise VersionConflict(f"QuestionnaireResponse/{prepared.get('id')} is at version "
                              f"{replaced}, not {wanted}")
    questionnaire = task_questionnaire(store, task)
    result = record_answer(store, task, questionnaire, prepared, existing=existing,
                           final=prepared["status"] == "completed", events=events, now=now,
                           if_match=wanted if current is not None and existing is None else None)
    return WriteResult(Stored.from_resource(result.response),
                       created=current is None and existing is None)


def _entry_target(entry: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Return (method, id) of a plain POST/PUT of a QuestionnaireResponse entry, else (None, None)."""
    request = entry.get("request") if isinstance(entry.get("request"), Mapping) else {}
    method = str(request.get("method", "")).upper()
    parts = urlsplit(str(request.get("url", "")))
    path = [p for p in parts.path.split("/") if p]
    if method not in ("POST", "PUT") or parts.query or request.get("ifNoneExist") \
            or not path or path[0] != "QuestionnaireResponse":
        return None, None
    return method, (path[1] if method == "PUT" and len(path) > 1 else None)


def _writes_task(entries: list[Any], task_id: str) -> bool:
    for entry in entries:
        request = (entry or {}).get("request") if isinstance(entry, Mapping) else None
        url = str((request or {}).get("url", ""))
        if url.split("?")[0].strip("/") == f"Task/{task_id}":
            return True
    return False


def write_bundle(store: Store, bundle: dict[str, Any], *, authorize: AuthorizeBundle | None = None,
                 events: Events | None = None, now: datetime | None = None) -> dict[str, Any] | None:
    """Run a transaction Bundle whose responses answer Tasks together with those Tasks' writes.

    Return the transaction-response Bundle, or None when the Bundle is no transaction
    or none of its responses answers an open Task (run it as before). ``authorize`` is
    called with the Bundle as it will run (responses completed with their Task's
    subject, before the Tasks are added; the task-response identifier is the
    server's and not the caller's to write) and raises when the caller may not run
    it; it may return the Bundle as the caller's grant prepares it.
    """
    if not isinstance(bundle, dict) or bundle.get("type") != "transaction" \
            or not isinstance(bundle.get("entry"), list):
        return None
    entries: list[Any] = list(bundle["entry"])
    answered: list[tuple[int, dict[str, Any], Mapping[str, Any]]] = []
    task_entries: list[dict[str, Any]] = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("resource"), dict):
            continue
        resource = entry["resource"]
        method, rid = _entry_target(entry)
        if method is None or resource.get("status") not in WORKFLOW_STATUSES:
            continue
        validate(resource, resource_type="QuestionnaireResponse")
        current = _current(store, rid)
        task = answered_task(store, resource, current.resource if current else None)
        if task is None or _writes_task(entries, task["id"]):
            continue
        if any(t["resource"]["id"] == task["id"] for t in task_entries):
            raise BusinessRuleError(f"Bundle.entry[{n}]: another entry already answers Task/{task['id']}")
        existing = response_for_task(store, task["id"])
        if task.get("status") == "completed" and existing is not None and existing.get("id") == rid:
            continue
        check_open(task)
        if existing is not None and existing["id"] != rid:
            raise BusinessRuleError(f"Bundle.entry[{n}]: Task/{task['id']} is answered by "
                                    f"QuestionnaireResponse/{existing['id']}; PUT that response")
        if existing is not None and existing.get("status") != "in-progress":
            raise BusinessRuleError(f"Task/{task['id']} has a submitted response; amend it instead")
        full_url = str(entry.get("fullUrl") or "")
        if method == "POST" and full_url and not full_url.startswith("urn:uuid:"):
            continue  # the Task could not point at the created response
        prepared = _prepared(resource, task, now)
        if rid:
            prepared["id"] = rid
        validated_as_amended(prepared, resource)  # the server's additions (see write_response)
        final = prepared["status"] == "completed"
        questionnaire = task_questionnaire(store, task)
        validate_response(questionnaire, prepared, final=final)
        if method == "POST" and not full_url:
            full_url = f"urn:uuid:{uuid.uuid4()}"
        entries[n] = {**entry, "resource": prepared, **({"fullUrl": full_url} if full_url else {})}
        new_task, _ = advance_task(task, final=final, now=now)
        if final:
            new_task["output"] = task_output(full_url if method == "POST"
                                             else f"QuestionnaireResponse/{rid}")
        task_entries.append(status_entry(new_task))
        answered.append((n, task, questionnaire))
    if not answered:
        return None
    prepared_bundle = {**bundle, "entry": entries}
    if authorize is not None:
        ours = {n for n, _, _ in answered}
        sent = [{**e, "resource": _as_sent(e["resource"], bundle["entry"][i]["resource"])}
                if i in ours else e for i, e in enumerate(entries)]
        checked = authorize({**bundle, "entry": sent})
        if checked is not None:  # the other entries as the caller's grant prepared them
            returned = list(checked["entry"])
            entries = [entries[i] if i in ours else returned[i] for i in range(len(entries))]
            prepared_bundle = {**checked, "entry": entries}
    for n, task, _ in answered:
        _check_subject(entries[n]["resource"], task)
    result = store.transaction({**prepared_bundle, "entry": entries + task_entries})
    written = list(result.get("entry") or [])
    result["entry"] = written[:len(entries)]
    for k, (n, task, questionnaire) in enumerate(answered):
        publish_answer(events, store, task_before=task, task=written[len(entries) + k]["resource"],
                       response=written[n]["resource"], questionnaire=questionnaire)
    return result

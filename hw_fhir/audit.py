"""The audit trail: every access to patient data as a FHIR ``AuditEvent`` (IHE BALP shape).

Who records what:

* the web layer (:mod:`smart_app.audit`) — every ``/fhir`` interaction (read, vread,
  search, history, create, update, delete, transaction, ``$export`` kick-off, status and
  downloads), the clinician and patient pages, and every refused attempt (401/403);
* the worker (:mod:`hw_fhir.default_audit`) — each reminder sent or failed, each record
  written back to an EHR and each Subscription notification sent (disclosures: type
  DICOM ``110106`` Export, the receiving system as the Destination Role agent), and each
  patient's record the worker changes (overdue Tasks failed, Tasks materialized, pathway
  steps released, responses re-scored).

Shape (IHE Basic Audit Log Patterns, RESTful interactions):

* ``type`` ``audit-event-type#rest`` for /fhir, DICOM ``110110`` (Patient Record) for
  pages, DICOM ``110100`` (Application Activity) for the worker; ``subtype`` a
  ``restful-interaction`` code (``read``, ``search-type``, ``create``...) or, for pages
  and the worker, an ``hw-fhir`` code naming the screen or job;
* ``action`` C/R/U/D/E, ``outcome`` ``0`` (success), ``4`` (refused or bad request),
  ``8`` (server failure), ``recorded``;
* ``agent``: the user (``fhirUser``, or the patient; requestor), the client (its
  ``client_id`` as ``altId``, the source IP in ``network``), and this server;
* ``entity``: each patient concerned (``what`` → ``Patient/<id>``, role Patient) and the
  resource or query (role Domain Resource / Query). Only references: never names,
  answers, query values or any other content.

Storage: an append-only table of its own (``audit_event``, one row per event with its
JSON, plus ``audit_entity`` rows for the references it names), not the resource store — so
audit rows never enter ``_history``, subscriptions or version counts, and an event costs
two row inserts. :class:`AuditTrail` queues events in memory and a background thread
writes them in batches (one transaction per batch, at most :data:`FLUSH_SECONDS` late).
A /fhir write (create, update, delete, transaction) brings its event into its own database
transaction (:class:`WriteAudit`, a rider of :mod:`hw_fhir.store.riders`): the write and
its record commit together or not at all, with no second transaction. Other accesses
that write (a write that failed and rolled back, POSTed pages) are written before the
response leaves. A process killed hard loses at most the reads of its last half second. :mod:`hw_fhir.audit_query` serves search, read and ``$export``; the ``/fhir`` API
refuses every write to AuditEvent and serves it only to ``system/`` scopes. :func:`prune`
deletes events older than ``Settings.audit_retention_days``; the worker runs it.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text, delete, insert, select

from .store.base import WriteResult
from .store.riders import Rider, Rows
from .store.schema import metadata

__all__ = [
    "Access",
    "AuditTrail",
    "WriteAudit",
    "audit_event",
    "trail_for",
    "close_trail",
    "prune",
    "outcome_for_status",
    "TYPE_REST",
    "TYPE_PATIENT_RECORD",
    "TYPE_APPLICATION",
    "TYPE_LOGIN",
    "TYPE_EXPORT",
    "DCM",
    "INTERACTION",
    "HW_SUBTYPE",
    "audit_event_table",
    "audit_entity_table",
    "row_values",
]

log = logging.getLogger("hw_fhir.audit")

AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
#: ``type`` of a RESTful interaction on /fhir.
TYPE_REST = {"system": AUDIT_TYPE, "code": "rest", "display": "Restful Operation"}
#: ``type`` of a page showing or changing a patient's record.
TYPE_PATIENT_RECORD = {"system": DCM, "code": "110110", "display": "Patient Record"}
#: ``type`` of a background job (the worker).
TYPE_APPLICATION = {"system": DCM, "code": "110100", "display": "Application Activity"}
#: ``type`` of a disclosure by the worker: records sent to another system (an EHR, a
#: Subscription endpoint); the receiving system is the Destination Role agent.
TYPE_EXPORT = {"system": DCM, "code": "110106", "display": "Export"}
#: ``type`` of a sign-in (token request); subtype DICOM ``110122`` Login.
TYPE_LOGIN = {"system": DCM, "code": "110114", "display": "User Authentication"}
#: ``subtype`` system of RESTful interactions.
INTERACTION = "http://hl7.org/fhir/restful-interaction"
#: ``subtype`` system of hw-fhir's own pages and jobs.
HW_SUBTYPE = "http://hw-fhir.org/fhir/CodeSystem/audit-subtype"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_ENTITY_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_CLIENT_ID = "urn:ietf:params:oauth:client-id"
_OUTCOME_TEXT = {"0": "Success", "4": "Minor failure", "8": "Serious failure"}
#: Events queued before a flush is forced.
BATCH = 200
#: Seconds a queued event may wait for its batch.
FLUSH_SECONDS = 0.5


audit_event_table = Table(
    "audit_event",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("recorded", String(32), nullable=False),
    Column("type", String(160), nullable=False),
    Column("subtype", String(160), nullable=False),
    Column("action", String(1), nullable=False),
    Column("outcome", String(2), nullable=False),
    Column("agent", String(255), nullable=True),
    Column("client", String(255), nullable=True),
    Column("address", String(64), nullable=True),
    Column("content", Text, nullable=False),
    Index("ix_audit_event_recorded", "recorded"),
    Index("ix_audit_event_agent", "agent", "recorded"),
)
#: The references an AuditEvent names (``entity.what``), for ``patient=`` and ``entity=``.
audit_entity_table = Table(
    "audit_entity",
    metadata,
    Column("event_id", String(32), nullable=False),
    Column("reference", String(160), nullable=False),
    Column("patient", Boolean, nullable=False),
    Index("ix_audit_entity_reference", "reference", "patient", "event_id"),
    Index("ix_audit_entity_event", "event_id"),
)


def outcome_for_status(status: int) -> str:
    """Return the AuditEvent outcome code of an HTTP status (0, 4 or 8)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


@dataclass(frozen=True)
class Access:
    """One access to record (references only; no content)."""

    type: dict[str, str]
    subtype: str
    action: str
    outcome: str = "0"
    who: str | None = None
    client_id: str | None = None
    address: str | None = None
    patients: tuple[str, ...] = ()
    what: tuple[str, ...] = ()
    query_type: str | None = None
    subtype_system: str = INTERACTION
    #: The receiving system of a disclosure (its name), else this server.
    destination: str | None = None
    #: Its address (a base URL or endpoint without query or credentials).
    destination_address: str | None = None
    recorded: str = field(default_factory=lambda: _now_text())


def _now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _reference(value: str) -> dict[str, str]:
    return {"reference": value}


def audit_event(access: Access, *, observer: str = "hw-fhir") -> dict[str, Any]:
    """Return the AuditEvent resource of an access."""
    user: dict[str, Any] = {
        "type": {"coding": [{"system": _PARTICIPATION, "code": "IRCP",
                             "display": "information recipient"}]},
        "requestor": True,
    }
    if access.who:
        user["who"] = _reference(access.who)
    if access.client_id:
        user["altId"] = access.client_id[:200]
    if access.address:
        user["network"] = {"address": access.address[:64], "type": "2"}
    if not access.who:
        user["who"] = ({"identifier": {"system": _CLIENT_ID, "value": access.client_id[:200]}}
                       if access.client_id else {"display": "anonymous"})
    agents = [user]
    if access.client_id:
        agents.append({
            "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": {"identifier": {"system": _CLIENT_ID, "value": access.client_id[:200]}},
            "requestor": False,
            **({"network": {"address": access.address[:64], "type": "2"}} if access.address else {}),
        })
    destination: dict[str, Any] = {
        "type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
        "who": {"display": (access.destination or observer)[:200]}, "requestor": False,
    }
    if access.destination_address:
        destination["network"] = {"address": access.destination_address[:200], "type": "5"}
    agents.append(destination)
    entities: list[dict[str, Any]] = [{
        "what": _reference(patient),
        "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": _ENTITY_ROLE, "code": "1", "display": "Patient"},
    } for patient in dict.fromkeys(access.patients)]
    for what in dict.fromkeys(access.what):
        entities.append({
            "what": _reference(what),
            "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": _ENTITY_ROLE, "code": "4", "display": "Domain Resource"},
        })
    if access.query_type:
        entities.append({
            "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": _ENTITY_ROLE, "code": "24", "display": "Query"},
            "description": access.query_type,  # the type searched; parameter values may be PHI
        })
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": uuid.uuid4().hex,
        "meta": {"versionId": "1", "lastUpdated": access.recorded},
        "type": access.type,
        "subtype": [{"system": access.subtype_system, "code": access.subtype}],
        "action": access.action,
        "recorded": access.recorded,
        "outcome": access.outcome,
        "outcomeDesc": _OUTCOME_TEXT.get(access.outcome, ""),
        "agent": agents,
        "source": {"observer": {"display": observer},
                   "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
    }
    if entities:
        event["entity"] = entities
    return event


def _coding_key(coding: dict[str, Any]) -> str:
    return f"{coding.get('system', '')}|{coding.get('code', '')}"[:160]


def row_values(events: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the ``audit_event`` and ``audit_entity`` rows of AuditEvent resources."""
    rows: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    for event in events:
        user = event["agent"][0]
        who = (user.get("who") or {}).get("reference")
        rows.append({
            "id": event["id"], "recorded": event["recorded"], "type": _coding_key(event["type"]),
            "subtype": _coding_key(event["subtype"][0]), "action": event["action"],
            "outcome": event["outcome"], "agent": who, "client": user.get("altId")
            or ((user.get("who") or {}).get("identifier") or {}).get("value"),
            "address": (user.get("network") or {}).get("address"),
            "content": orjson.dumps(event).decode(),
        })
        seen: set[str] = set()
        for entity in event.get("entity") or []:
            ref = (entity.get("what") or {}).get("reference")
            if not ref or ref in seen:
                continue
            seen.add(ref)
            entities.append({"event_id": event["id"], "reference": ref[:160],
                             "patient": ref.startswith("Patient/")})
    return rows, entities


class AuditTrail:
    """Queue AuditEvents and write them to the store in batches (one transaction each)."""

    def __init__(self, store: Any, *, batch: int = BATCH, flush_seconds: float = FLUSH_SECONDS,
                 enabled: bool = True) -> None:
        self.store = store
        self.batch = batch
        self.flush_seconds = flush_seconds
        self.enabled = enabled and hasattr(store, "engine")
        self._queue: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0
        self._thread: threading.Thread | None = None

    def record(self, access: Access, *, now: bool = False) -> None:
        """Queue one access; ``now`` writes it (and everything queued) before returning."""
        if not self.enabled:
            return
        with self._lock:
            self._queue.append(audit_event(access))
            full = len(self._queue) >= self.batch
        if now or full:
            self.flush()
        else:
            self._ensure_flusher()

    def flush(self) -> int:
        """Write every queued event; return how many were written."""
        with self._write_lock:
            with self._lock:
                events, self._queue = self._queue, []
            if not events:
                return 0
            try:
                rows, entities = row_values(events)
                with self.store.begin() as conn:
                    conn.execute(insert(audit_event_table), rows)
                    if entities:
                        conn.execute(insert(audit_entity_table), entities)
            except Exception:
                with self._lock:  # keep them for the next attempt
                    self._queue[:0] = events
                log.exception("could not write %d audit events; kept for the next attempt",
                              len(events))
                return 0
            return len(events)

    @property
    def pending(self) -> int:
        """How many events wait to be written."""
        with self._lock:
            return len(self._queue)

    def _ensure_flusher(self) -> None:
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            self._pid = os.getpid()  # a forked worker starts its own flusher
            self._thread = threading.Thread(target=self._run, name="hw-fhir-audit", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        ref = weakref.ref(self)
        interval = self.flush_seconds
        del self  # the thread must not keep the trail alive
        while True:
            trail = ref()
            if trail is None or trail._pid != os.getpid():
                return
            wake = trail._wake
            del trail
            wake.wait(interval)
            trail = ref()
            if trail is None:
                return
            trail._wake.clear()
            if trail.pending:
                trail.flush()
            del trail

    def close(self) -> None:
        """Write what is queued and stop the flusher."""
        self.flush()
        self._pid = -1
        self._wake.set()


class WriteAudit(Rider):
    """The AuditEvent of a write, committed in the write's own transaction.

    ``access`` builds the :class:`Access` from the results the transaction wrote (None:
    nothing to record that way). It runs inside the transaction: should it fail, the
    write goes on without the event, and the caller records it afterwards (``done``
    stays False).
    """

    def __init__(self, access: Callable[[Sequence[WriteResult]], Access | None]) -> None:
        super().__init__()
        self._access = access

    def rows(self, written: Sequence[WriteResult]) -> Rows:
        try:
            access = self._access(written)
            if access is None:
                return ()
            events, entities = row_values([audit_event(access)])
        except Exception:  # noqa: BLE001 - never fail the write: it is recorded after
            log.exception("could not build the audit event of a write; recorded after it")
            return ()
        return [(audit_event_table, events), (audit_entity_table, entities)]


_TRAILS: "weakref.WeakKeyDictionary[Any, AuditTrail]" = weakref.WeakKeyDictionary()
_TRAILS_LOCK = threading.Lock()


def trail_for(store: Any, *, enabled: bool | None = None) -> AuditTrail:
    """Return the audit trail of a store (one per store object and process)."""
    with _TRAILS_LOCK:
        trail = _TRAILS.get(store)
        if trail is None:
            trail = _TRAILS[store] = AuditTrail(store)
        if enabled is not None:
            trail.enabled = enabled and hasattr(store, "engine")
        return trail


def close_trail(store: Any) -> None:
    """Write a store's queued audit events and stop its flusher (if it has a trail)."""
    with _TRAILS_LOCK:
        trail = _TRAILS.pop(store, None)
    if trail is not None:
        trail.close()


@atexit.register
def _flush_all() -> None:
    for trail in list(_TRAILS.values()):
        try:
            trail.flush()
        except Exception:  # noqa: BLE001 - the process is ending; log and go on
            log.exception("audit events lost at exit")


def prune(store: Any, *, retention_days: int, now: datetime | None = None, chunk: int = 5000) -> int:
    """Delete AuditEvents recorded more than ``retention_days`` ago; return how many."""
    if retention_days <= 0:
        return 0
    trail_for(store).flush()
    moment = (now or datetime.now(timezone.utc)) - timedelta(days=retention_days)
    cutoff = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    t, e = audit_event_table, audit_entity_table
    total = 0
    while True:
        with store.begin() as conn:
            ids: Sequence[str] = conn.execute(
                select(t.c.id).where(t.c.recorded < cutoff).order_by(t.c.recorded).limit(chunk)
            ).scalars().all()
            if not ids:
                return total
            conn.execute(delete(e).where(e.c.event_id.in_(ids)))
            conn.execute(delete(t).where(t.c.id.in_(ids)))
        total += len(ids)

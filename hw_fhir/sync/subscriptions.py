"""Topic-based Subscriptions (FHIR R4 Subscriptions Backport IG): rest-hook, id-only, heartbeats.

A client creates an R4 ``Subscription`` through the normal /fhir API::

    criteria  = one of the TOPICS below (canonical URL)
    _criteria.extension[backport-filter-criteria].valueString = "Task?patient=Patient/123"
    channel.type = "rest-hook", channel.endpoint = "https://...",
    channel.header = ["Authorization: ..."]
    channel.payload = "application/fhir+json"
    channel._payload.extension[backport-payload-content].valueCode = "id-only"   (or "empty")
    channel.extension: backport-heartbeat-period, backport-timeout, backport-max-count

The worker (:func:`run_subscriptions`) then, every cycle:

1. picks up new or changed Subscriptions, checks them (a bad one gets status
   ``error`` and an ``error`` text), and sends a ``handshake``; once it is
   accepted the Subscription becomes ``active``;
2. derives events from the store's write sequence (:mod:`hw_fhir.sync.changes`)
   up to a write barrier: each Subscription keeps its own cursor, and new events
   are numbered and recorded in the same transaction that moves the cursor, so
   no event is ever missed or numbered twice;
3. POSTs ``event-notification`` Bundles (``history``, first entry the
   ``Parameters`` status, then one id-only entry per event) in event order, at most
   ``backport-max-count`` events each; a failed POST is retried with exponential
   backoff, always starting again from the first undelivered event, and after
   ``notification_error_after`` failures in a row the Subscription shows
   ``error`` until a delivery succeeds; ``heartbeat`` Bundles go out when
   nothing was sent for the heartbeat period. Each event-notification POSTed is
   audited as a disclosure (AuditEvent DICOM 110106 Export, subtype
   ``subscription-notification``: the Subscription, the focus references and their
   patients; the endpoint as the destination; outcome 0 sent, 4 retried, 8 failing).

``$status`` (:func:`status_bundle`) reports the state as a ``searchset`` of
status ``Parameters``.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl, urlsplit

import orjson
import requests
from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..audit import TYPE_EXPORT
from ..default_audit import record_worker
from ..egress import EgressPolicy, egress_policy
from ..errors import EgressRefused, Gone, InvalidInput, NotFound, VersionConflict
from ..smart.compartment import matches_filters
from ..smart.subscriber import grant_of, subscriber_policy
from ..store import schema as S
from ..store.searchparams import params_for
from .changes import Change, barrier, for_update, previous_version, read_changes
from .config import SyncConfig, sync_config
from .tables import sync_subscription, sync_subscription_event

if TYPE_CHECKING:
    from ..services import Services

__all__ = [
    "TOPIC_BASE",
    "TOPICS",
    "Topic",
    "ChannelConfig",
    "SUBSCRIPTION_OPERATIONS",
    "parse_subscription",
    "notification_bundle",
    "status_bundle",
    "run_subscriptions",
]

log = logging.getLogger("hw_fhir.sync.subscriptions")

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"
EXT_FILTER = f"{BACKPORT}/StructureDefinition/backport-filter-criteria"
EXT_CONTENT = f"{BACKPORT}/StructureDefinition/backport-payload-content"
EXT_HEARTBEAT = f"{BACKPORT}/StructureDefinition/backport-heartbeat-period"
EXT_TIMEOUT = f"{BACKPORT}/StructureDefinition/backport-timeout"
EXT_MAX_COUNT = f"{BACKPORT}/StructureDefinition/backport-max-count"
NOTIFICATION_PROFILE = f"{BACKPORT}/StructureDefinition/backport-subscription-notification-r4"
STATUS_PROFILE = f"{BACKPORT}/StructureDefinition/backport-subscription-status-r4"
TOPIC_BASE = "http://hw-fhir.org/fhir/SubscriptionTopic"

#: CapabilityStatement ``rest.operation`` entry for ``$status``.
SUBSCRIPTION_OPERATIONS = [
    {"name": "status",
     "definition": f"{BACKPORT}/OperationDefinition/backport-subscription-status"},
]

_CONTENTS = ("id-only", "empty")
_PAYLOADS = ("application/fhir+json", "application/json")
_MATCHABLE = {"token", "reference", "uri", "string"}
_WANTS_DELIVERY = ("requested", "active", "error")


# ------------------------------------------------------------------- topics


@dataclass(frozen=True)
class Topic:
    """A subscription topic: which writes of which type are events."""

    url: str
    resource_type: str
    title: str
    trigger: Callable[[Change, "dict[str, Any] | None"], bool]
    needs_previous: bool = False


def _status_changed(change: Change, previous: dict[str, Any] | None) -> bool:
    return previous is None or previous.get("status") != change.resource.get("status")


def _became_completed(change: Change, previous: dict[str, Any] | None) -> bool:
    if change.resource.get("status") != "completed":
        return False
    return previous is None or previous.get("status") != "completed"


def _created(change: Change, previous: dict[str, Any] | None) -> bool:
    return change.version_id == 1


TOPICS: dict[str, Topic] = {t.url: t for t in (
    Topic(f"{TOPIC_BASE}/task-status", "Task",
          "A Task (homework assignment) was created or its status changed",
          _status_changed, needs_previous=True),
    Topic(f"{TOPIC_BASE}/questionnaire-response-completed", "QuestionnaireResponse",
          "A QuestionnaireResponse was completed", _became_completed, needs_previous=True),
    Topic(f"{TOPIC_BASE}/observation-created", "Observation", "A new Observation (e.g. a score)",
          _created),
    Topic(f"{TOPIC_BASE}/flag-created", "Flag", "A new Flag (e.g. a risk alert)", _created),
)}


# -------------------------------------------------------------- the channel


@dataclass(frozen=True)
class ChannelConfig:
    """What a Subscription asks for, checked."""

    topic: str
    endpoint: str
    headers: tuple[tuple[str, str], ...] = ()
    filters: tuple[tuple[str, str], ...] = ()
    content: str = "id-only"
    heartbeat: int | None = None
    timeout: float | None = None
    max_count: int = 20
    #: the subscriber's grant (scopes and context, JSON) stamped at creation; None: unrestricted
    grant: str | None = None

    def to_json(self) -> str:
        """Serialise for the state table."""
        return orjson.dumps({"topic": self.topic, "endpoint": self.endpoint,
                             "headers": [list(h) for h in self.headers],
                             "filters": [list(f) for f in self.filters], "content": self.content,
                             "heartbeat": self.heartbeat, "timeout": self.timeout,
                             "max_count": self.max_count, "grant": self.grant}).decode()

    @classmethod
    def from_json(cls, raw: str) -> "ChannelConfig":
        """Read back what :meth:`to_json` wrote."""
        d = orjson.loads(raw)
        return cls(d["topic"], d["endpoint"], tuple((a, b) for a, b in d["headers"]),
                   tuple((a, b) for a, b in d["filters"]), d["content"], d["heartbeat"],
                   d["timeout"], d["max_count"], d.get("grant"))


def _ext(element: Any, url: str) -> Any:
    for ext in (element or {}).get("extension") or [] if isinstance(element, dict) else []:
        if isinstance(ext, dict) and ext.get("url") == url:
            return next((v for k, v in ext.items() if k.startswith("value")), None)
    return None


def _exts(element: Any, url: str) -> list[Any]:
    out: list[Any] = []
    for ext in (element or {}).get("extension") or [] if isinstance(element, dict) else []:
        if isinstance(ext, dict) and ext.get("url") == url:
            out.extend(v for k, v in ext.items() if k.startswith("value"))
    return out


def parse_subscription(resource: dict[str, Any], *, require_https: bool = False,
                       egress: EgressPolicy | None = None) -> ChannelConfig:
    """Check a Subscription against what this server supports; InvalidInput saying what is wrong.

    With ``egress``, the endpoint and the headers are checked against the egress policy too.
    """
    topic = TOPICS.get(str(resource.get("criteria", "")))
    if topic is None:
        raise InvalidInput(f"Unknown topic {resource.get('criteria')!r}; this server offers "
                           + ", ".join(sorted(TOPICS)))
    channel = resource.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise InvalidInput(f"Channel type {channel.get('type')!r} is not supported (use rest-hook)")
    endpoint = str(channel.get("endpoint") or "")
    scheme = urlsplit(endpoint).scheme
    schemes = ("https",) if require_https else ("https", "http")
    if scheme not in schemes or not urlsplit(endpoint).netloc:
        raise InvalidInput(f"channel.endpoint must be an absolute {' or '.join(schemes)} URL, "
                           f"not {endpoint!r}")
    payload = channel.get("payload") or "application/fhir+json"
    if payload not in _PAYLOADS:
        raise InvalidInput(f"channel.payload {payload!r} is not supported "
                           "(use application/fhir+json)")
    content = _ext(channel.get("_payload"), EXT_CONTENT) or "id-only"
    if content not in _CONTENTS:
        raise InvalidInput(f"Payload content {content!r} is not supported (use id-only or empty)")
    headers = []
    for line in channel.get("header") or []:
        name, sep, value = str(line).partition(":")
        if not sep or not name.strip():
            raise InvalidInput(f"channel.header {line!r} must look like 'Name: value'")
        headers.append((name.strip(), value.strip()))
    if egress is not None:
        egress.check_url(endpoint)
        headers = egress.check_headers(headers)
    filters: list[tuple[str, str]] = []
    known = params_for(topic.resource_type)
    for raw in _exts(resource.get("_criteria"), EXT_FILTER):
        rtype, sep, query = str(raw).rpartition("?")
        if sep and rtype and rtype != topic.resource_type:
            raise InvalidInput(f"Filter {raw!r} is about {rtype}, but the topic is about "
                               f"{topic.resource_type}")
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name != "_id" and (name not in known or known[name].type not in _MATCHABLE):
                raise InvalidInput(f"Filter parameter {name!r} is not supported for "
                                   f"{topic.resource_type} (token, reference, uri and string "
                                   "parameters are)")
            filters.append((name, value))
    heartbeat = _ext(channel, EXT_HEARTBEAT)
    timeout = _ext(channel, EXT_TIMEOUT)
    max_count = _ext(channel, EXT_MAX_COUNT)
    return ChannelConfig(topic.url, endpoint, tuple(headers), tuple(filters), content,
                         int(heartbeat) if heartbeat else None,
                         float(timeout) if timeout else None,
                         max(1, int(max_count)) if max_count else 20, grant_of(resource))


# ------------------------------------------------------------------ bundles


def _instant(ts: float | None = None) -> str:
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _url(base: str, path: str) -> str:
    return f"{base.rstrip('/')}/{path}" if base else path


@dataclass(frozen=True)
class _Event:
    number: int
    resource_type: str
    id: str
    version_id: int
    occurred: str


def _status_parameters(*, base: str, sub_id: str, topic: str, status: str, kind: str,
                       events_total: int, events: list[_Event], content: str,
                       error: str | None = None) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "subscription",
         "valueReference": {"reference": _url(base, f"Subscription/{sub_id}")}},
        {"name": "topic", "valueCanonical": topic},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_total)},
    ]
    for e in events:
        parts: list[dict[str, Any]] = [{"name": "event-number", "valueString": str(e.number)},
                                       {"name": "timestamp", "valueInstant": e.occurred}]
        if content != "empty":
            parts.append({"name": "focus",
                          "valueReference": {"reference": _url(base, f"{e.resource_type}/{e.id}")}})
        params.append({"name": "notification-event", "part": parts})
    if error:
        params.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {"resourceType": "Parameters", "id": str(uuid.uuid4()),
            "meta": {"profile": [STATUS_PROFILE]}, "parameter": params}


def notification_bundle(*, base: str, sub_id: str, topic: str, status: str, kind: str,
                        events_total: int, events: list[_Event] = (),  # type: ignore[assignment]
                        content: str = "id-only") -> dict[str, Any]:
    """Build a notification Bundle (handshake, heartbeat or event-notification)."""
    status_resource = _status_parameters(base=base, sub_id=sub_id, topic=topic, status=status,
                                         kind=kind, events_total=events_total, events=list(events),
                                         content=content)
    entries: list[dict[str, Any]] = [{
        "fullUrl": f"urn:uuid:{status_resource['id']}",
        "resource": status_resource,
        "request": {"method": "GET", "url": _url(base, f"Subscription/{sub_id}/$status")},
        "response": {"status": "200"},
    }]
    if content == "id-only":
        for e in events:
            created = e.version_id == 1
            entry: dict[str, Any] = {
                "request": {"method": "POST" if created else "PUT",
                            "url": e.resource_type if created else f"{e.resource_type}/{e.id}"},
                "response": {"status": "201" if created else "200"},
            }
            if base:
                entry = {"fullUrl": _url(base, f"{e.resource_type}/{e.id}"), **entry}
            entries.append(entry)
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()),
            "meta": {"profile": [NOTIFICATION_PROFILE]}, "type": "history",
            "timestamp": _instant(), "entry": entries}


def status_bundle(services: "Services", sub_ids: list[str], *, base: str = "") -> dict[str, Any]:
    """Return the ``$status`` answer for some Subscriptions (a searchset of status Parameters)."""
    s = sync_subscription
    with services.store.engine.connect() as conn:
        rows = {r.sub_id: r for r in conn.execute(select(s).where(s.c.sub_id.in_(sub_ids)))}
        resources = {r.res_id: orjson.loads(r.content) for r in conn.execute(
            select(S.resource.c.res_id, S.resource.c.content).where(
                S.resource.c.res_type == "Subscription", S.resource.c.res_id.in_(sub_ids),
                S.resource.c.deleted == False))}  # noqa: E712
    entries = []
    for sub_id in sub_ids:
        row = rows.get(sub_id)
        resource = resources.get(sub_id) or {}
        status = row.status if row is not None and row.status != "invalid" else \
            str(resource.get("status") or "requested")
        params = _status_parameters(
            base=base, sub_id=sub_id, topic=str(resource.get("criteria", "")), status=status,
            kind="query-status", events_total=int(row.events_total) if row is not None else 0,
            events=[], content="empty", error=row.last_error if row is not None else None)
        entries.append({"fullUrl": f"urn:uuid:{params['id']}", "resource": params,
                        "search": {"mode": "match"}})
    return {"resourceType": "Bundle", "type": "searchset", "timestamp": _instant(),
            "total": len(entries), "entry": entries}


# ------------------------------------------------------------------- worker


def _set_resource_status(services: "Services", sub_id: str, status: str,
                         error: str | None = None) -> None:
    """Show the delivery state on the Subscription resource (skipped if it changed meanwhile)."""
    store = services.store
    try:
        current = store.read("Subscription", sub_id)
    except (NotFound, Gone):
        return
    resource = current.resource
    if resource.get("status") == "off":
        return
    if resource.get("status") == status and resource.get("error") == error:
        return
    updated = {k: v for k, v in resource.items() if k not in ("status", "error", "meta")}
    updated["status"] = status
    if error:
        updated["error"] = error[:1000]
    try:
        store.update({"resourceType": "Subscription", **updated},
                     if_match=f'W/"{current.version_id}"')
    except VersionConflict:
        log.info("Subscription/%s changed meanwhile; its status is set on the next cycle", sub_id)


def _refresh(services: "Services", now: float) -> int:
    """Bring the state table in line with the Subscriptions; return how many want delivery."""
    store = services.store
    r, s = S.resource, sync_subscription
    with store.engine.connect() as conn:
        resources = conn.execute(select(r.c.res_id, r.c.version_id, r.c.deleted, r.c.content)
                                 .where(r.c.res_type == "Subscription")).all()
        states = {row.sub_id: row for row in conn.execute(select(s))}
    require_https = bool(getattr(services.settings, "production", False))
    egress = egress_policy(services.settings)
    horizon = None
    wanting = 0
    for res in resources:
        state = states.get(res.res_id)
        resource = orjson.loads(res.content) if res.content else {}
        if res.deleted or resource.get("status") not in _WANTS_DELIVERY:
            if state is not None and state.status != "off":
                with store.begin() as c:
                    c.execute(update(s).where(s.c.sub_id == res.res_id)
                              .values(status="off", version_id=res.version_id))
            continue
        if state is not None and state.version_id == res.version_id:
            wanting += state.status != "invalid"
            continue
        try:
            config = parse_subscription(resource, require_https=require_https, egress=egress)
        except InvalidInput as exc:
            values = dict(status="invalid", version_id=res.version_id, last_error=exc.message)
            _upsert_state(store, res.res_id, state, values, now)
            _set_resource_status(services, res.res_id, "error", exc.message)
            continue
        wanting += 1
        if state is not None and state.status not in ("off", "invalid") \
                and state.topic == config.topic:
            with store.begin() as c:  # the client edited it: keep the numbering and the cursor
                c.execute(update(s).where(s.c.sub_id == res.res_id).values(
                    version_id=res.version_id, config=config.to_json()))
            continue
        if horizon is None:
            horizon = barrier(store)
        values = dict(version_id=res.version_id, topic=config.topic, status="requested",
                      config=config.to_json(), start_seq=horizon.seq, cursor_seq=horizon.seq,
                      events_total=0, delivered_through=0, handshake_done=False, attempts=0,
                      next_attempt_at=now, last_sent_at=None, lease_until=None, last_error=None)
        _upsert_state(store, res.res_id, state, values, now)
    return wanting


def _upsert_state(store: Any, sub_id: str, state: Any, values: dict[str, Any], now: float) -> None:
    s = sync_subscription
    full = {**dict(topic="", config="{}", start_seq=0, cursor_seq=0, events_total=0,
                   delivered_through=0, handshake_done=False, attempts=0, next_attempt_at=now,
                   created_at=now), **values}
    try:
        with store.begin() as conn:
            if state is None:
                conn.execute(insert(s).values(sub_id=sub_id, **full))
            else:
                conn.execute(update(s).where(s.c.sub_id == sub_id).values(**values))
                if values.get("start_seq") is not None:
                    conn.execute(delete(sync_subscription_event)
                                 .where(sync_subscription_event.c.sub_id == sub_id))
    except IntegrityError:
        log.info("Subscription/%s was picked up by another worker", sub_id)


def _collect(services: "Services", upto: int, *, batch: int = 500) -> int:
    """Derive new events of every live Subscription up to ``upto``; return how many."""
    store = services.store
    s, ev = sync_subscription, sync_subscription_event
    with store.engine.connect() as conn:
        sub_ids = [r.sub_id for r in conn.execute(select(s.c.sub_id).where(
            s.c.status.in_(_WANTS_DELIVERY), s.c.cursor_seq < upto))]
    found = 0
    for sub_id in sub_ids:
        with store.begin() as conn:
            state = conn.execute(for_update(select(s).where(s.c.sub_id == sub_id),
                                            store.dialect)).first()
            if state is None or state.status not in _WANTS_DELIVERY:
                continue
            config = ChannelConfig.from_json(state.config)
            topic = TOPICS[config.topic]
            subscriber = subscriber_policy(config.grant)
            cursor, total = int(state.cursor_seq), int(state.events_total)
            while cursor < upto:
                changes = read_changes(conn, after=cursor, upto=upto,
                                       types=[topic.resource_type], limit=batch)
                rows = []
                for change in changes:
                    if change.deleted or not change.raw:
                        continue
                    previous = previous_version(conn, change) if topic.needs_previous else None
                    if not topic.trigger(change, previous):
                        continue
                    if config.filters and not matches_filters(change.resource, config.filters):
                        continue
                    if subscriber is not None and not subscriber.allows_any_read(change.resource):
                        continue  # the subscriber may not see it: no event, not even its id
                    total += 1
                    rows.append(dict(sub_id=sub_id, event_number=total, seq=change.seq,
                                     res_type=change.resource_type, res_id=change.id,
                                     version_id=change.version_id, method=change.method,
                                     occurred=change.last_updated))
                if rows:
                    conn.execute(insert(ev), rows)
                    found += len(rows)
                cursor = changes[-1].seq if len(changes) == batch else upto
            conn.execute(update(s).where(s.c.sub_id == sub_id)
                         .values(cursor_seq=cursor, events_total=total))
    return found


def _post(config: ChannelConfig, bundle: dict[str, Any], timeout: float,
          egress: EgressPolicy) -> str | None:
    """POST a notification through the egress policy; return None on success, else what went wrong.

    The endpoint is checked again at every POST: what its name resolves to may have changed.
    """
    try:
        headers = {**dict(egress.check_headers(config.headers)),
                   "Content-Type": "application/fhir+json"}
        response = egress.request("POST", config.endpoint, data=orjson.dumps(bundle),
                                  headers=headers, timeout=timeout)
    except EgressRefused as exc:
        return exc.message
    except requests.RequestException as exc:
        return f"{type(exc).__name__} posting to the endpoint"
    response.close()
    if 200 <= response.status_code < 300:
        return None
    return f"The endpoint answered HTTP {response.status_code}"


def _claim(services: "Services", now: float, lease: float) -> list[str]:
    store = services.store
    s = sync_subscription
    claimed = []
    with store.begin() as conn:
        stmt = select(s.c.sub_id, s.c.handshake_done, s.c.delivered_through, s.c.events_total,
                      s.c.config, s.c.last_sent_at).where(
            s.c.status.in_(_WANTS_DELIVERY), s.c.next_attempt_at <= now,
            or_(s.c.lease_until.is_(None), s.c.lease_until < now))
        for row in conn.execute(for_update(stmt, store.dialect, skip_locked=True)).all():
            config = ChannelConfig.from_json(row.config)
            pending = row.delivered_through < row.events_total
            heartbeat_due = bool(config.heartbeat) and (
                row.last_sent_at is None or now - row.last_sent_at >= float(config.heartbeat or 0))
            if row.handshake_done and not pending and not heartbeat_due:
                continue
            claimed.append(row.sub_id)
        if claimed:
            conn.execute(update(s).where(s.c.sub_id.in_(claimed)).values(lease_until=now + lease))
    return claimed


def _deliver_one(services: "Services", sub_id: str, now: float, cfg: SyncConfig,
                 budget: int) -> int:
    """Send what is due for one claimed Subscription; return how many notifications went out."""
    store = services.store
    s, ev = sync_subscription, sync_subscription_event
    base = services.settings.fhir_base or ""
    sent = 0
    while sent < budget:
        with store.engine.connect() as conn:
            state = conn.execute(select(s).where(s.c.sub_id == sub_id)).first()
            if state is None or state.status not in _WANTS_DELIVERY:
                return sent
            config = ChannelConfig.from_json(state.config)
            rows = conn.execute(select(ev).where(
                ev.c.sub_id == sub_id, ev.c.event_number > state.delivered_through)
                .order_by(ev.c.event_number).limit(config.max_count)).all()
        events = [_Event(int(r.event_number), r.res_type, r.res_id, int(r.version_id), r.occurred)
                  for r in rows]
        shown = str(state.status)
        if not state.handshake_done:
            kind = "handshake"
            events = []
        elif events:
            kind = "event-notification"
        elif config.heartbeat and (state.last_sent_at is None
                                   or now - state.last_sent_at >= config.heartbeat):
            kind = "heartbeat"
        else:
            return sent
        bundle = notification_bundle(base=base, sub_id=sub_id, topic=config.topic, status=shown,
                                     kind=kind, events_total=int(state.events_total),
                                     events=events, content=config.content)
        problem = _post(config, bundle, config.timeout or cfg.notification_timeout,
                        egress_policy(services.settings))
        if problem is not None:
            attempts = int(state.attempts) + 1
            delay = min(cfg.notification_max_backoff,
                        cfg.notification_backoff * 2 ** (attempts - 1))
            failing = attempts >= cfg.notification_error_after
            with store.begin() as conn:
                conn.execute(update(s).where(s.c.sub_id == sub_id).values(
                    attempts=attempts, next_attempt_at=now + delay, last_error=problem,
                    status="error" if failing else state.status))
            log.warning("Subscription/%s: %s %s failed (%s); retry in %.0f s", sub_id, kind,
                        "notification", problem, delay)
            if failing and state.status != "error":
                _set_resource_status(services, sub_id, "error", problem)
            if events:
                _audit(services, sub_id, config, events, "8" if failing else "4")
            return sent
        sent += 1
        values: dict[str, Any] = dict(attempts=0, last_sent_at=now, last_error=None,
                                      status="active", next_attempt_at=now)
        if kind == "handshake":
            values["handshake_done"] = True
        if events:
            values["delivered_through"] = events[-1].number
        with store.begin() as conn:
            conn.execute(update(s).where(s.c.sub_id == sub_id).values(**values))
            if events:
                conn.execute(delete(ev).where(ev.c.sub_id == sub_id,
                                              ev.c.event_number <= events[-1].number))
        if state.status != "active":
            _set_resource_status(services, sub_id, "active")
        if events:
            _audit(services, sub_id, config, events, "0")
    return sent


def _audit(services: "Services", sub_id: str, config: ChannelConfig, events: list[_Event],
           outcome: str) -> None:
    """Record an event-notification POSTed to a Subscription's endpoint (a disclosure).

    Entities: the Subscription, each focus (``Type/id``, even when the payload is
    ``empty``: the endpoint learns that it changed) and their patients (one read of
    each version). The destination is the endpoint, without its query string.
    """
    resources: list[dict[str, Any]] = []
    for e in events:
        try:
            found = services.store.vread(e.resource_type, e.id, str(e.version_id))
            resources.append(found.resource)
        except (NotFound, Gone):
            resources.append({"resourceType": e.resource_type, "id": e.id})
    parts = urlsplit(config.endpoint)
    port = f":{parts.port}" if parts.port else ""
    address = f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
    record_worker(services.store, "subscription-notification", action="E", type=TYPE_EXPORT,
                  resources=resources, what=(f"Subscription/{sub_id}",), outcome=outcome,
                  destination=f"Subscription/{sub_id}", destination_address=address)


def run_subscriptions(services: "Services", *, now: float | None = None, budget: int = 50) -> int:
    """Pick up Subscriptions, derive events, send due notifications (the worker task).

    Return how many notifications were delivered. ``budget`` bounds the
    notifications sent to one Subscription in one call.
    """
    now = time.time() if now is None else now
    cfg = sync_config(services.settings)
    if not _refresh(services, now):
        return 0
    _collect(services, barrier(services.store).seq)
    sent = 0
    lease = max(60.0, (cfg.notification_timeout + 5) * budget)
    for sub_id in _claim(services, now, lease):
        try:
            sent += _deliver_one(services, sub_id, now, cfg, budget)
        finally:
            with services.store.begin() as conn:
                conn.execute(update(sync_subscription).where(sync_subscription.c.sub_id == sub_id)
                             .values(lease_until=None))
    return sent

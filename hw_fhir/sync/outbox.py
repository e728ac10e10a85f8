"""EHR write-back through a durable outbox: completed responses and scores into the chart.

Each EHR that accepts writes is an ``[[ehr]]`` table in the config file::

    [[ehr]]
    name = "main-ehr"                            # stable key of the outbox rows
    base_url = "https://ehr.example.org/fhir"
    write_back = ["QuestionnaireResponse", "Observation"]
    auth = "backend-services"                    # none | bearer | backend-services
    client_id = "hw-fhir"                        # backend-services
    scope = "system/QuestionnaireResponse.crus system/Observation.crus"   # u: amendments
    # token_url = "https://ehr.example.org/token"   (default: discovered)
    # key_file = "ehr-main-ehr-key.json"             (instance folder; created; RS384)
    # token = "..."                                  (bearer)
    # identifier_system = "http://hw-fhir.org/fhir/sid/write-back"
    # iss = "https://ehr.example.org/fhir"           (how local Patients link to it)
    # timeout = 10
    # backfill = false                               (true: also write back what existed before)
    [ehr.criteria]                                   # which versions qualify, as search criteria
    Observation = "category=survey&status=final,amended,corrected"

How a record travels:

1. **Enqueue** (:func:`feed_outbox`): the feeder reads the store's write
   sequence (:mod:`hw_fhir.sync.changes`) from its own cursor up to a write
   barrier, so every write path is covered (API, transactions, domain code) and
   nothing is skipped. The first version of a resource that meets the criteria
   becomes one ``sync_outbox`` row (unique per EHR and resource), inserted in the
   same transaction that moves the cursor.
2. **Deliver** (:func:`deliver_outbox`): due rows are leased (``FOR UPDATE SKIP
   LOCKED`` on PostgreSQL) and sent with :class:`~hw_fhir.store.remote.RemoteStore`
   as a *conditional create* on a stable identifier (``identifier_system`` |
   ``Type/id``), so a retry after a lost answer finds the copy instead of making
   a second one. References are rewritten for the EHR: Patients and
   Practitioners mirrored from it point at its own ids, everything else becomes
   a logical reference by the same stable identifier.
3. **Retry**: a transient failure (connection refused, timeout, 5xx, 429)
   backs off exponentially (``outbox_backoff`` doubled up to
   ``outbox_max_backoff``) and pushes back the EHR's other due rows too, so a
   down EHR is not hammered; rows wait for days (``outbox_give_up_hours``).
   A permanent failure (the EHR refuses the resource, 4xx) or giving up marks the
   row ``failed``: :func:`list_outbox` and ``hw-fhir outbox failed`` show them to
   an administrator, :func:`retry_outbox` / ``hw-fhir outbox retry`` queue them again.

Amendments: a later qualifying version of a resource already queued (a response
``amended``, its re-scored Observations) moves the resource's one row to that version
and makes it pending again; once the EHR has a copy (``remote_ref``) the new version is
sent as an update (PUT) of that copy, so the EHR keeps one record per resource and
gets each version once. A version that arrives while an older one is being sent is
sent after it.

Patients: a reference to a local Patient becomes the EHR's own id (the Patient was
mirrored from the EHR: launch or mirror identifier) or else a logical reference by a
business identifier the Patient carries. A record about a Patient with neither is not
sent with a dangling ``Patient/<hw-fhir id>``: its row is ``waiting`` (with the reason
in ``last_error``), shown by ``hw-fhir outbox status`` and ``hw-fhir outbox failed``,
and is tried again every ``outbox_max_backoff`` seconds, so it goes out once the
Patient is linked to the EHR or gains an identifier.

A QuestionnaireResponse carries one identifier: the copy's is replaced by the
write-back identifier.

Audit: each attempt to send a record is a disclosure, an AuditEvent (DICOM 110106
Export, subtype ``ehr-write-back``, action E, the EHR's name and base URL as the
destination agent, the patient and the local ``Type/id`` as entities) with outcome 0
when delivered, 4 when it will be retried, 8 when refused or given up. A record that
waits for its Patient was not sent and is not audited.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import and_, func, or_, select, update

from ..audit import TYPE_EXPORT
from ..default_audit import record_worker
from ..errors import ConfigurationError, HwFhirError, NotFound, RemoteError, UnresolvedReference
from ..smart.compartment import matches_filters
from ..smart.keys import load_or_create_key, public_jwks
from ..smart.mirror import URL_IDENTIFIER_SYSTEM
from ..smart.registry import normalize_iss
from ..store.remote import RemoteStore
from ..store.searchparams import params_for, parse_reference
from .backend import BackendServicesToken
from .changes import barrier, for_update, get_cursor, read_changes, set_cursor
from .config import SyncConfig, sync_config
from .tables import sync_outbox

if TYPE_CHECKING:
    from ..services import Services

__all__ = [
    "EhrTarget",
    "OutboxRecord",
    "WRITE_BACK_TYPES",
    "DEFAULT_CRITERIA",
    "DEFAULT_IDENTIFIER_SYSTEM",
    "ehr_targets",
    "write_back_copy",
    "feed_outbox",
    "deliver_outbox",
    "run_outbox",
    "list_outbox",
    "outbox_counts",
    "retry_outbox",
    "OUTBOX_STATUSES",
]

log = logging.getLogger("hw_fhir.sync.outbox")

#: Types that can be written back (they have an identifier to create conditionally on).
WRITE_BACK_TYPES = ("QuestionnaireResponse", "Observation", "Communication", "Flag", "Task",
                    "CarePlan", "CommunicationRequest")
#: Which versions qualify, by type, unless ``[ehr.criteria]`` says otherwise.
DEFAULT_CRITERIA: dict[str, tuple[tuple[str, str], ...]] = {
    "QuestionnaireResponse": (("status", "completed,amended"),),
    "Observation": (("category", "survey"), ("status", "final,amended,corrected")),
    "Communication": (("status", "completed"),),
}
DEFAULT_IDENTIFIER_SYSTEM = "http://hw-fhir.org/fhir/sid/write-back"
_AUTH = ("none", "bearer", "backend-services")
_KEYS = {"name", "base_url", "write_back", "auth", "client_id", "scope", "token_url", "key_file",
         "key_alg", "token", "identifier_system", "iss", "timeout", "backfill", "criteria"}
_MAPPED_TYPES = ("Patient", "Practitioner")
#: Row statuses: ``waiting`` rows hold a record the EHR could not resolve yet (a Patient).
OUTBOX_STATUSES = ("pending", "waiting", "delivered", "failed")


@dataclass(frozen=True)
class EhrTarget:
    """One EHR that receives write-backs."""

    name: str
    base_url: str
    write_back: tuple[str, ...]
    auth: str = "none"
    client_id: str = ""
    scope: str = ""
    token_url: str = ""
    key_file: str = ""
    key_alg: str = "RS384"
    token: str = field(default="", repr=False)
    identifier_system: str = DEFAULT_IDENTIFIER_SYSTEM
    iss: str = ""
    timeout: float = 10.0
    backfill: bool = False
    criteria: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict, hash=False)

    @classmethod
    def from_config(cls, item: Mapping[str, Any], *, instance_path: str = "") -> "EhrTarget":
        """Build a target from one ``[[ehr]]`` table; ConfigurationError when it is wrong."""
        name = str(item.get("name") or "").strip()
        where = f"[[ehr]] {name or '(no name)'}"
        if not name or len(name) > 100:
            raise ConfigurationError(f"{where}: name is required (at most 100 characters)")
        unknown = set(item) - _KEYS
        if unknown:
            raise ConfigurationError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        base_url = normalize_iss(str(item.get("base_url") or ""))
        if not base_url.startswith(("https://", "http://")):
            raise ConfigurationError(f"{where}: base_url must be an absolute http(s) URL")
        types = item.get("write_back") or ["QuestionnaireResponse", "Observation"]
        if isinstance(types, str):
            types = [t.strip() for t in types.split(",") if t.strip()]
        for rtype in types:
            if rtype not in WRITE_BACK_TYPES:
                raise ConfigurationError(f"{where}: cannot write back {rtype!r} (one of "
                                         f"{', '.join(WRITE_BACK_TYPES)})")
        auth = str(item.get("auth") or "none")
        if auth not in _AUTH:
            raise ConfigurationError(f"{where}: auth must be one of {', '.join(_AUTH)}")
        if auth == "backend-services" and not item.get("client_id"):
            raise ConfigurationError(f"{where}: backend-services needs client_id")
        if auth == "bearer" and not item.get("token"):
            raise ConfigurationError(f"{where}: bearer needs token")
        criteria = {t: DEFAULT_CRITERIA.get(t, ()) for t in types}
        for rtype, query in (item.get("criteria") or {}).items():
            if rtype not in types:
                raise ConfigurationError(f"{where}: criteria for {rtype}, which is not "
                                         "written back")
            pairs = tuple(parse_qsl(str(query), keep_blank_values=True))
            known = params_for(rtype)
            for pname, _ in pairs:
                if pname != "_id" and (pname not in known or known[pname].type not in
                                       ("token", "reference", "uri", "string")):
                    raise ConfigurationError(f"{where}: criteria parameter {rtype}.{pname} is not "
                                             "supported (token, reference, uri, string)")
            criteria[rtype] = pairs
        key_file = str(item.get("key_file") or f"ehr-{name}-key.json")
        if instance_path and not Path(key_file).is_absolute():
            key_file = str(Path(instance_path) / key_file)
        try:
            timeout = float(item.get("timeout") or 10.0)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{where}: timeout must be a number of seconds") from None
        return cls(name=name, base_url=base_url, write_back=tuple(types), auth=auth,
                   client_id=str(item.get("client_id") or ""),
                   scope=str(item.get("scope") or " ".join(f"system/{t}.crus" for t in types)),
                   token_url=str(item.get("token_url") or ""), key_file=key_file,
                   key_alg=str(item.get("key_alg") or "RS384"), token=str(item.get("token") or ""),
                   identifier_system=str(item.get("identifier_system")
                                         or DEFAULT_IDENTIFIER_SYSTEM),
                   iss=normalize_iss(str(item.get("iss") or base_url)), timeout=timeout,
                   backfill=bool(item.get("backfill", False)), criteria=criteria)

    @property
    def cursor_name(self) -> str:
        """The name of this target's cursor on the write sequence."""
        return f"outbox:{self.name}"

    def key(self) -> Any:
        """Return the private key of the client assertion (created on first use)."""
        return load_or_create_key(Path(self.key_file), self.key_alg)

    def public_jwks(self) -> dict[str, Any]:
        """Return the public JWKS to register with the EHR."""
        return public_jwks([self.key()])

    def identifier(self, resource_type: str, id: str) -> dict[str, str]:
        """The stable identifier of a written-back resource."""
        return {"system": self.identifier_system, "value": f"{resource_type}/{id}"}

    def qualifies(self, resource: dict[str, Any]) -> bool:
        """Whether this version of a resource is to be written back."""
        rtype = resource.get("resourceType", "")
        if rtype not in self.write_back:
            return False
        pairs = self.criteria.get(rtype, ())
        return not pairs or matches_filters(resource, pairs)


def ehr_targets(settings: Any) -> list[EhrTarget]:
    """Return the write-back targets of ``settings.extra["ehr"]``."""
    items = (getattr(settings, "extra", None) or {}).get("ehr") or []
    if isinstance(items, Mapping):
        items = [items]
    targets = [EhrTarget.from_config(i, instance_path=getattr(settings, "instance_path", ""))
               for i in items]
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ConfigurationError("[[ehr]] names must be unique")
    return targets


@dataclass(frozen=True)
class OutboxRecord:
    """One outbox row, for administrators."""

    id: int
    ehr: str
    resource_type: str
    resource_id: str
    version_id: int
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    delivered_at: float | None
    last_error: str | None
    remote_ref: str | None

    @property
    def reference(self) -> str:
        """``Type/id`` of the local resource."""
        return f"{self.resource_type}/{self.resource_id}"


def _record(row: Any) -> OutboxRecord:
    return OutboxRecord(int(row.id), row.ehr, row.res_type, row.res_id, int(row.version_id),
                        row.status, int(row.attempts), row.created_at, row.next_attempt_at,
                        row.delivered_at, row.last_error, row.remote_ref)


# ---------------------------------------------------------------- transform


_Resolver = Callable[[str, str, dict[str, Any]], "dict[str, Any] | None"]


def _rewrite(node: Any, resolve: _Resolver) -> Any:
    if isinstance(node, list):
        return [_rewrite(item, resolve) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        out[key] = _rewrite(value, resolve) if isinstance(value, (dict, list)) else value
    ref = node.get("reference")
    if isinstance(ref, str) and "resourceType" not in node:
        parsed = parse_reference(ref)
        if parsed.target_type and parsed.target_id and not parsed.url:
            replacement = resolve(parsed.target_type, parsed.target_id, node)
            if replacement is not None:
                out = replacement
    return out


def write_back_copy(resource: dict[str, Any], target: EhrTarget,
                    lookup: Callable[[str, str], dict[str, Any] | None]) -> dict[str, Any]:
    """Return the copy of a local resource to create in the EHR.

    No id or version meta; the stable identifier added; references rewritten:
    ``lookup(type, id)`` returns a local Patient/Practitioner (None if unknown);
    absolute references to the EHR's own resources (the Encounter homework was
    assigned in) become its ``Type/id``. Raise UnresolvedReference for a local
    Patient the EHR cannot resolve.
    """
    rtype, rid = resource["resourceType"], resource["id"]
    data = {k: copy.deepcopy(v) for k, v in resource.items() if k not in ("id", "meta", "text")}
    meta = {k: v for k, v in (resource.get("meta") or {}).items()
            if k in ("profile", "tag", "security")}
    if meta:
        data["meta"] = copy.deepcopy(meta)
    ident = target.identifier(rtype, rid)
    if rtype == "QuestionnaireResponse":
        data["identifier"] = ident
    else:
        data["identifier"] = [i for i in data.get("identifier") or []
                              if i.get("system") != ident["system"]] + [ident]

    def resolve(ref_type: str, ref_id: str, node: dict[str, Any]) -> dict[str, Any] | None:
        keep = {k: v for k, v in node.items() if k == "display"}
        if ref_type in _MAPPED_TYPES:
            local = lookup(ref_type, ref_id)
            if local is None:
                return None
            prefix = f"{target.iss}/{ref_type}/"
            for i in local.get("identifier") or []:
                value = str(i.get("value") or "")
                if i.get("system") == URL_IDENTIFIER_SYSTEM and value.startswith(prefix):
                    return {"reference": f"{ref_type}/{value[len(prefix):]}", **keep}
            business = [i for i in local.get("identifier") or []
                        if i.get("system") and i.get("value")
                        and i.get("system") != URL_IDENTIFIER_SYSTEM]
            if business:
                ident = {k: business[0][k] for k in ("system", "value")}
                return {"type": ref_type, "identifier": ident, **keep}
            if ref_type == "Patient":
                raise UnresolvedReference(
                    f"Patient/{ref_id} is not known to {target.name}: it did not come from that "
                    "EHR and has no business identifier; link it (launch from the EHR) or add an "
                    "identifier the EHR knows", reference=f"Patient/{ref_id}")
            return None
        return {"type": ref_type, "identifier": target.identifier(ref_type, ref_id), **keep}

    return _relative_to(_rewrite(data, resolve), (target.iss, target.base_url))  # type: ignore[no-any-return]


def _relative_to(node: Any, bases: tuple[str, ...]) -> Any:
    """Turn absolute references to the EHR's own resources (an Encounter...) into ``Type/id``."""
    if isinstance(node, list):
        return [_relative_to(item, bases) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _relative_to(v, bases) if isinstance(v, (dict, list)) else v for k, v in node.items()}
    ref = node.get("reference")
    if isinstance(ref, str) and ref.startswith(("http://", "https://")):
        for base in bases:
            prefix = base.rstrip("/") + "/"
            rest = ref[len(prefix):] if base and ref.startswith(prefix) else ""
            if rest.count("/") == 1 and rest.split("/")[0][:1].isupper():
                out["reference"] = rest
                break
    return out


# -------------------------------------------------------------------- feed


def _upsert(dialect: str) -> Any:
    """INSERT a row per resource; a newer version of a queued resource re-queues its row."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(sync_outbox)
    new = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=["ehr", "res_type", "res_id"],
        set_={"version_id": new.version_id, "seq": new.seq, "status": "pending", "attempts": 0,
              "next_attempt_at": new.next_attempt_at, "created_at": new.created_at,
              "last_error": None},
        where=sync_outbox.c.version_id < new.version_id)


def _newest_per_resource(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["res_type"], row["res_id"])
        if key not in newest or newest[key]["version_id"] < row["version_id"]:
            newest[key] = row
    return list(newest.values())


def feed_outbox(services: "Services", *, now: float | None = None, batch: int = 1000) -> int:
    """Enqueue the qualifying writes since each target's cursor; return rows added or re-queued."""
    targets = ehr_targets(services.settings)
    if not targets:
        return 0
    now = time.time() if now is None else now
    store = services.store
    upto = barrier(store).seq
    added = 0
    for target in targets:
        with store.begin() as conn:
            cursor = get_cursor(conn, target.cursor_name, store.dialect)
            exists = cursor is not None
            if cursor is None:
                cursor = 0 if target.backfill else upto
            while cursor < upto:
                changes = read_changes(conn, after=cursor, upto=upto, types=target.write_back,
                                       limit=batch)
                rows = [dict(ehr=target.name, res_type=c.resource_type, res_id=c.id,
                             version_id=c.version_id, seq=c.seq, status="pending", attempts=0,
                             next_attempt_at=now, created_at=now)
                        for c in changes
                        if not c.deleted and c.raw and target.qualifies(c.resource)]
                if rows:
                    result = conn.execute(_upsert(store.dialect), _newest_per_resource(rows))
                    added += max(0, result.rowcount or 0)
                cursor = changes[-1].seq if len(changes) == batch else upto
            set_cursor(conn, target.cursor_name, cursor, exists=exists)
    return added


# ----------------------------------------------------------------- deliver


def _remote(services: "Services", target: EhrTarget) -> "RemoteStore":
    provider: Any = None
    if target.auth == "bearer":
        provider = lambda: target.token  # noqa: E731
    elif target.auth == "backend-services":
        cache = services.outbox_tokens
        provider = cache.get(target.name)
        if provider is None or provider.client_id != target.client_id:
            provider = BackendServicesToken(client_id=target.client_id, key=target.key(),
                                            scope=target.scope, fhir_base=target.base_url,
                                            token_url=target.token_url, timeout=target.timeout)
            cache[target.name] = provider
    return RemoteStore(target.base_url, token_provider=provider, timeout=target.timeout,
                       retries=1, backoff=0.2, max_backoff=1.0, max_retry_after=5.0)


def _transient(exc: HwFhirError) -> bool:
    return isinstance(exc, RemoteError) and (exc.status >= 500 or exc.status in (408, 429))


def _claim(services: "Services", target: EhrTarget, now: float, cfg: SyncConfig) -> list[Any]:
    store = services.store
    o = sync_outbox
    lease = max(60.0, target.timeout * 4 * cfg.outbox_batch)
    with store.begin() as conn:
        stmt = (select(o).where(o.c.ehr == target.name, o.c.status.in_(("pending", "waiting")),
                                o.c.next_attempt_at <= now,
                                or_(o.c.lease_until.is_(None), o.c.lease_until < now))
                .order_by(o.c.id).limit(cfg.outbox_batch))
        rows = list(conn.execute(for_update(stmt, store.dialect, skip_locked=True)).all())
        if rows:
            conn.execute(update(o).where(o.c.id.in_([r.id for r in rows]))
                         .values(lease_until=now + lease))
    return rows


def _finish(services: "Services", row: Any, *, remote_ref: str | None = None, **values: Any) -> None:
    """Record the outcome of sending ``row``'s version; a newer version queued meanwhile stays due."""
    o = sync_outbox
    with services.store.begin() as conn:
        if remote_ref is not None:
            conn.execute(update(o).where(o.c.id == row.id).values(remote_ref=remote_ref))
        done = conn.execute(update(o).where(o.c.id == row.id, o.c.version_id == row.version_id)
                            .values(lease_until=None, **values))
        if not done.rowcount:
            conn.execute(update(o).where(o.c.id == row.id).values(lease_until=None))


def _send(remote: "RemoteStore", row: Any, data: dict[str, Any], target: EhrTarget) -> str:
    """Create the EHR's copy (conditionally, on the stable identifier) or update it; return its ref."""
    if row.remote_ref:
        remote_id = str(row.remote_ref).split("/")[1]
        return remote.update({**data, "id": remote_id}).stored.reference
    ident = target.identifier(row.res_type, row.res_id)
    criteria = urlencode({"identifier": f"{ident['system']}|{ident['value']}"})
    result = remote.create(data, if_none_exist=criteria)
    if not result.created and _content(result.resource) != _content(data):
        # a copy of an earlier version (its answer was lost): bring it to this version
        return remote.update({**data, "id": result.stored.id}).stored.reference
    return result.stored.reference


def _content(resource: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("id", "meta", "text")}


def _deliver_target(services: "Services", target: EhrTarget, now: float, cfg: SyncConfig) -> int:
    rows = _claim(services, target, now, cfg)
    if not rows:
        return 0
    store = services.store
    cache: dict[tuple[str, str], dict[str, Any] | None] = {}

    def lookup(rtype: str, rid: str) -> dict[str, Any] | None:
        if (rtype, rid) not in cache:
            try:
                cache[(rtype, rid)] = store.read(rtype, rid).resource
            except NotFound:
                cache[(rtype, rid)] = None
        return cache[(rtype, rid)]

    delivered = 0
    remote = _remote(services, target)
    try:
        for n, row in enumerate(rows):
            attempts = int(row.attempts) + 1
            resource: dict[str, Any] | None = None
            try:
                resource = store.vread(row.res_type, row.res_id, str(row.version_id)).resource
                data = write_back_copy(resource, target, lookup)
                remote_ref = _send(remote, row, data, target)
            except UnresolvedReference as exc:
                log.info("outbox %s: %s/%s waits: %s", target.name, row.res_type, row.res_id,
                         exc.reference)
                _finish(services, row, status="waiting", attempts=attempts,
                        next_attempt_at=now + cfg.outbox_max_backoff, last_error=exc.message[:2000])
                continue
            except HwFhirError as exc:
                if _transient(exc):
                    gave_up = _backoff(services, target, rows[n:], attempts, now, cfg, exc.message)
                    _audit(services, target, row, resource, "8" if gave_up else "4")
                    return delivered
                log.warning("outbox %s: %s/%s refused: %s", target.name, row.res_type,
                            row.res_id, exc.message)
                _finish(services, row, status="failed", attempts=attempts,
                        last_error=f"{type(exc).__name__}: {exc.message}"[:2000])
                _audit(services, target, row, resource, "8")
                continue
            except Exception as exc:  # noqa: BLE001 - keep the row, wait, and say why
                log.exception("outbox %s: %s/%s could not be sent", target.name, row.res_type,
                              row.res_id)
                gave_up = _backoff(services, target, rows[n:], attempts, now, cfg,
                                   f"Unexpected {type(exc).__name__}: {exc}")
                _audit(services, target, row, resource, "8" if gave_up else "4")
                return delivered
            _finish(services, row, remote_ref=remote_ref, status="delivered", attempts=attempts,
                    delivered_at=time.time(), last_error=None)
            _audit(services, target, row, resource, "0")
            delivered += 1
    finally:
        remote.close()
    return delivered


def _audit(services: "Services", target: EhrTarget, row: Any, resource: dict[str, Any] | None,
           outcome: str) -> None:
    """Record the attempt to disclose a record to the EHR (0 delivered, 4 retried, 8 failed)."""
    record_worker(services.store, "ehr-write-back", action="E", type=TYPE_EXPORT,
                  resources=[resource] if resource else (),
                  what=() if resource else (f"{row.res_type}/{row.res_id}",), outcome=outcome,
                  destination=target.name, destination_address=target.base_url)


def _backoff(services: "Services", target: EhrTarget, rows: list[Any], attempts: int, now: float,
             cfg: SyncConfig, message: str) -> bool:
    """Put off the failed row and the rest of the batch; give up on rows waiting too long.

    Return True when the failed row was given up (marked ``failed``).
    """
    o = sync_outbox
    delay = min(cfg.outbox_max_backoff, cfg.outbox_backoff * 2 ** (attempts - 1))
    first = rows[0]
    give_up = first.created_at + cfg.outbox_give_up_hours * 3600 <= now
    log.warning("outbox %s: %s/%s not delivered (%s); %s", target.name, first.res_type,
                first.res_id, message, "giving up" if give_up else f"retry in {delay:.0f} s")
    with services.store.begin() as conn:
        if give_up:
            conn.execute(update(o).where(o.c.id == first.id).values(
                status="failed", attempts=attempts, lease_until=None,
                last_error=f"Gave up after {cfg.outbox_give_up_hours:g} hours: {message}"[:2000]))
        else:
            conn.execute(update(o).where(o.c.id == first.id).values(
                attempts=attempts, next_attempt_at=now + delay, lease_until=None,
                last_error=message[:2000]))
        rest = [r.id for r in rows[1:]]
        if rest:
            conn.execute(update(o).where(o.c.id.in_(rest)).values(lease_until=None))
        # the EHR is unreachable: let its other due rows wait as long
        conn.execute(update(o).where(o.c.ehr == target.name, o.c.status == "pending",
                                     o.c.next_attempt_at < now + delay,
                                     or_(o.c.lease_until.is_(None), o.c.lease_until < now))
                     .values(next_attempt_at=now + delay))
    return give_up


def deliver_outbox(services: "Services", *, now: float | None = None) -> int:
    """Send the due outbox rows of every target; return how many were delivered."""
    now = time.time() if now is None else now
    cfg = sync_config(services.settings)
    delivered = 0
    for target in ehr_targets(services.settings):
        while True:
            count = _deliver_target(services, target, now, cfg)
            delivered += count
            if count < cfg.outbox_batch:
                break
    return delivered


def run_outbox(services: "Services", *, now: float | None = None) -> int:
    """Enqueue new write-backs and deliver the due ones (the worker task); return deliveries."""
    if not ehr_targets(services.settings):
        return 0
    feed_outbox(services, now=now)
    return deliver_outbox(services, now=now)


# ----------------------------------------------------------- administrators


def list_outbox(services: "Services", *, status: str | tuple[str, ...] | None = "failed",
                ehr: str | None = None, limit: int = 100) -> list[OutboxRecord]:
    """Return outbox rows (default: the failed ones; a tuple: any of those statuses), oldest first."""
    o = sync_outbox
    stmt = select(o).order_by(o.c.id).limit(limit)
    if isinstance(status, tuple):
        stmt = stmt.where(o.c.status.in_(status))
    elif status:
        stmt = stmt.where(o.c.status == status)
    if ehr:
        stmt = stmt.where(o.c.ehr == ehr)
    with services.store.engine.connect() as conn:
        return [_record(r) for r in conn.execute(stmt)]


def outbox_counts(services: "Services") -> dict[tuple[str, str], int]:
    """Return how many rows each EHR has in each status."""
    o = sync_outbox
    with services.store.engine.connect() as conn:
        rows = conn.execute(select(o.c.ehr, o.c.status, func.count()).group_by(o.c.ehr, o.c.status))
        return {(ehr, status): int(n) for ehr, status, n in rows}


def retry_outbox(services: "Services", ids: list[int] | None = None, *, ehr: str | None = None,
                 now: float | None = None) -> int:
    """Queue failed and waiting rows again (the given ids, or all of an EHR, or all); return how many."""
    now = time.time() if now is None else now
    o = sync_outbox
    where = [o.c.status.in_(("failed", "waiting"))]
    if ids is not None:
        where.append(o.c.id.in_(ids))
    if ehr:
        where.append(o.c.ehr == ehr)
    with services.store.begin() as conn:
        done = conn.execute(update(o).where(and_(*where)).values(
            status="pending", next_attempt_at=now, created_at=now, lease_until=None))
    return int(done.rowcount or 0)

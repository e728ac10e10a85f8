"""Bulk Data ``$export`` (FHIR Bulk Data Access IG): jobs and the NDJSON writer.

Levels: system (``/$export``), every patient (``/Patient/$export``) and the
members of a Group (``/Group/[id]/$export``). Parameters: ``_outputFormat``
(``application/fhir+ndjson``, ``application/ndjson`` or ``ndjson``), ``_type``,
``_since`` and ``_typeFilter``, checked by :mod:`hw_fhir.sync.export_request`.

A kick-off only records a job (:func:`start_export`); the worker runs it
(:func:`run_pending_exports`). The work streams rows from the database
(server-side cursor on PostgreSQL, a stepping cursor on SQLite, ``yield_per``
batches) straight into NDJSON files under ``<instance>/exports/<job>/``:
stored JSON is written as it is, never parsed, unless the client's scopes
need a per-resource check. Memory stays flat however many rows there are.

What an export holds: each matching resource once, at its current version,
when that version was written at or before ``transactionTime``. Resources
changed later are left to the next ``_since=<transactionTime>`` export, so a
chain of exports misses nothing and repeats nothing. ``transactionTime`` is
read at a write barrier (see :mod:`hw_fhir.sync.changes`), so every write
stamped before it has committed. With ``_since``, resources deleted since then
are listed in ``deleted`` files (one transaction Bundle with a DELETE entry per line).

Access: a job carries the grant of the client that asked; each type is
exported only as far as its scopes reach (``patient/`` compartments, granular
filters), types it cannot read are skipped with an OperationOutcome in the
``error`` files. Files are served only to the client that asked, and are
deleted when they expire. ``Subscription`` is left out unless asked for by
``_type`` (its channel headers may hold credentials).
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import and_, or_, select, update

from ..audit_query import export_lines as audit_export_lines
from ..errors import ExportCancelled, Forbidden, Issue, NotFound, Throttled
from ..smart.compartment import COMPARTMENT_PARAMS, matches_filters, patients_of
from ..smart.policy import AccessPolicy, Grant
from ..store import schema as S
from ..store.searchparams import params_for
from ..store.sql import SqlStore
from .changes import barrier, for_update
from .config import sync_config
from .export_request import (
    AUDIT_EVENT,
    NDJSON,
    OUTPUT_FORMATS,
    ExportRequest,
    parse_export_request,
    type_filter_query,
)
from .tables import sync_export_job

if TYPE_CHECKING:
    from ..services import Services

__all__ = [
    "NDJSON",
    "OUTPUT_FORMATS",
    "EXPORT_OPERATIONS",
    "ExportRequest",
    "ExportAccess",
    "ExportJob",
    "OutputFile",
    "ExportResult",
    "parse_export_request",
    "write_export",
    "start_export",
    "get_export",
    "cancel_export",
    "export_file",
    "export_manifest",
    "run_pending_exports",
    "expire_exports",
    "export_dir",
]

log = logging.getLogger("hw_fhir.sync.export")

_BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"

#: CapabilityStatement ``rest.operation`` entries for the three export levels.
EXPORT_OPERATIONS = [
    {"name": "export", "definition": f"{_BULK}/export"},
    {"name": "patient-export", "definition": f"{_BULK}/patient-export"},
    {"name": "group-export", "definition": f"{_BULK}/group-export"},
]

_ACTIVE = ("accepted", "in-progress")
_FILE_NAME = re.compile(r"^[A-Za-z]+-\d+\.ndjson$")
_MATCHABLE = {"token", "reference", "uri", "string"}


# ------------------------------------------------------------------- access


@dataclass(frozen=True)
class ExportAccess:
    """The grant an export runs under (the access token's scopes and context)."""

    scope: str
    client_id: str = ""
    context: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    #: the patients user/ scopes reach under the ``my-patients`` policy (None: every patient)
    patients: tuple[str, ...] | None = None

    @classmethod
    def from_grant(cls, grant: Any) -> "ExportAccess":
        """Capture a :class:`~hw_fhir.smart.policy.Grant`."""
        patients = getattr(grant, "patients", None)
        return cls(grant.scopes.text, grant.client_id, dict(grant.context or {}),
                   tuple(sorted(patients)) if patients is not None else None)

    def policy(self) -> AccessPolicy:
        """The access policy of this grant."""
        grant = Grant.from_token(self.scope, self.client_id, self.context)
        if self.patients is not None:
            grant = replace(grant, patients=frozenset(self.patients))
        return AccessPolicy(grant)

    def to_json(self) -> str:
        """Serialise for the job table."""
        return orjson.dumps({"scope": self.scope, "client_id": self.client_id,
                             "context": self.context, "patients": self.patients}).decode()

    @classmethod
    def from_json(cls, raw: str | None) -> "ExportAccess | None":
        """Read back what :meth:`to_json` wrote (None: unrestricted)."""
        if not raw:
            return None
        data = orjson.loads(raw)
        patients = data.get("patients")
        return cls(data["scope"], data.get("client_id", ""), data.get("context") or {},
                   tuple(patients) if patients is not None else None)


# ------------------------------------------------------------------- writer


@dataclass(frozen=True)
class OutputFile:
    """One NDJSON file: the resource type in it, its name, and how many lines."""

    type: str
    name: str
    count: int


@dataclass(frozen=True)
class ExportResult:
    """The files an export wrote."""

    transaction_time: str
    output: tuple[OutputFile, ...] = ()
    deleted: tuple[OutputFile, ...] = ()
    error: tuple[OutputFile, ...] = ()

    @property
    def total(self) -> int:
        """How many resources were exported."""
        return sum(f.count for f in self.output)


class _Files:
    """NDJSON files of one kind, rolled over every ``max_lines`` lines."""

    def __init__(self, out_dir: Path, prefix: str, rtype: str, max_lines: int) -> None:
        self.out_dir, self.prefix, self.rtype, self.max_lines = out_dir, prefix, rtype, max_lines
        self.files: list[OutputFile] = []
        self._fh: Any = None
        self._name = ""
        self._count = 0

    def write(self, lines: Sequence[str]) -> None:
        start = 0
        while start < len(lines):
            if self._fh is None:
                self._name = f"{self.prefix}-{len(self.files) + 1}.ndjson"
                self._fh = (self.out_dir / self._name).open("w", encoding="utf-8")
                self._count = 0
            room = self.max_lines - self._count
            chunk = lines[start:start + room]
            self._fh.write("\n".join(chunk))
            self._fh.write("\n")
            self._count += len(chunk)
            start += len(chunk)
            if self._count >= self.max_lines:
                self._close()

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self.files.append(OutputFile(self.rtype, self._name, self._count))
            self._fh = None

    def close(self) -> list[OutputFile]:
        self._close()
        return self.files


def _filter_clauses(store: SqlStore, rtype: str, pairs: Sequence[tuple[str, str]]) -> list[Any]:
    q = type_filter_query(rtype, list(pairs), store.base_url)
    # the SqlStore's own clause builder keeps export filters identical to search
    return [store._filter_clause(rtype, f, drive=(n == 0)) for n, f in enumerate(q.filters)]


def _group_members(store: SqlStore, group_id: str) -> Any:
    ref = S.sp_reference
    return select(ref.c.target_id).where(ref.c.res_type == "Group", ref.c.res_id == group_id,
                                         ref.c.param == "member", ref.c.target_type == "Patient")


def _compartment_clause(store: SqlStore, request: ExportRequest, rtype: str) -> Any | None:
    if request.level == "system":
        return None
    r, ref = S.resource, S.sp_reference
    param = COMPARTMENT_PARAMS[rtype]
    members = _group_members(store, request.group_id or "") if request.level == "group" else None
    if param == "_id":
        return r.c.res_id.in_(members) if members is not None else None
    inner = select(ref.c.res_id).where(ref.c.res_type == rtype, ref.c.param == param,
                                       ref.c.target_type == "Patient")
    if members is not None:
        inner = inner.where(ref.c.target_id.in_(members))
    return r.c.res_id.in_(inner)


@dataclass
class _TypePlan:
    where: list[Any]
    post_filter: AccessPolicy | None
    filters: list[list[tuple[str, str]]]


def _plan(store: SqlStore, request: ExportRequest, rtype: str, policy: AccessPolicy | None,
          transaction_time: str) -> _TypePlan:
    """Return the SQL conditions for one type; Forbidden when the grant cannot read it."""
    r = S.resource
    where: list[Any] = [r.c.res_type == rtype, r.c.last_updated <= transaction_time]
    if request.since:
        where.append(r.c.last_updated >= request.since)
    compartment = _compartment_clause(store, request, rtype)
    if compartment is not None:
        where.append(compartment)
    filters = [parse_qsl(q, keep_blank_values=True) for t, q in request.type_filters if t == rtype]
    if filters:
        where.append(or_(*(and_(*_filter_clauses(store, rtype, f)) for f in filters)))
    post: AccessPolicy | None = None
    if policy is not None:
        plan = policy.search_plan(rtype, "r")
        if plan.extra:
            where.extend(_filter_clauses(store, rtype, plan.extra))
        if plan.post_filter:
            post = policy
    return _TypePlan(where, post, filters)


def _stream(store: SqlStore, stmt: Any, batch: int) -> Iterator[Sequence[Any]]:
    """Yield the rows of ``stmt`` in batches (a server-side cursor on PostgreSQL)."""
    with store.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(stmt)
        yield from result.partitions()


def _stream_values(store: SqlStore, stmt: Any, batch: int) -> Iterator[list[Any]]:
    """Yield the first column of ``stmt``'s rows in batches, straight from the DBAPI cursor.

    The hot path of an export: SQLAlchemy builds the SQL, the driver's own cursor
    (a named, server-side one on PostgreSQL) fetches, no Row objects are made.
    """
    compiled = stmt.compile(dialect=store.engine.dialect,
                            compile_kwargs={"render_postcompile": True})
    positional = compiled.positiontup is not None
    params: Any = [compiled.params[name] for name in compiled.positiontup] if positional \
        else compiled.params
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        if store.dialect == "postgresql":
            cursor = raw.cursor(name=f"hw_export_{secrets.token_hex(6)}")  # type: ignore[union-attr]
        else:
            cursor = raw.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(str(compiled), params)
            while rows := cursor.fetchmany(batch):
                yield [row[0] for row in rows]
        finally:
            cursor.close()
            raw.rollback()  # type: ignore[union-attr]  # end the read and its cursor at once


def _outcome_line(message: str, code: str = "forbidden", severity: str = "error") -> str:
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": severity, "code": code, "diagnostics": message}]}).decode()


def _deleted_line(rtype: str, id: str) -> str:
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"{rtype}/{id}"}}]}).decode()


def _matchable(rtype: str, pairs: list[tuple[str, str]]) -> bool:
    known = params_for(rtype)
    return all(name == "_id" or (name in known and known[name].type in _MATCHABLE)
               for name, _ in pairs)


def _was_exported(previous: dict[str, Any] | None, request: ExportRequest, plan: _TypePlan,
                  members: set[str] | None, policy: AccessPolicy | None) -> bool:
    """Whether the last version of a since-deleted resource would have been exported.

    A filter that cannot be evaluated on a resource (dates...) counts as a match:
    listing a deletion the client never saw does no harm, missing one does.
    """
    if previous is None:
        return policy is None and request.level == "system" and not plan.filters
    if request.level != "system":
        patients = patients_of(previous)
        if members is not None:
            patients &= members
        if not patients:
            return False
    rtype = previous.get("resourceType", "")
    if plan.filters and all(_matchable(rtype, f) for f in plan.filters) \
            and not any(matches_filters(previous, f) for f in plan.filters):
        return False
    return policy is None or policy.allows("r", previous)


def _deleted_since(store: SqlStore, request: ExportRequest, rtype: str, plan: _TypePlan,
                   transaction_time: str, members: set[str] | None, policy: AccessPolicy | None,
                   batch: int) -> Iterator[list[str]]:
    r, v = S.resource, S.resource_version
    prev = v.alias("prev")
    stmt = (select(r.c.res_id, prev.c.content)
            .select_from(r.outerjoin(prev, and_(prev.c.res_type == r.c.res_type,
                                                prev.c.res_id == r.c.res_id,
                                                prev.c.version_id == r.c.version_id - 1)))
            .where(r.c.res_type == rtype, r.c.deleted == True,  # noqa: E712
                   r.c.last_updated >= request.since, r.c.last_updated <= transaction_time))
    simple = request.level == "system" and not plan.filters and policy is None
    for rows in _stream(store, stmt, batch):
        lines = []
        for row in rows:
            if simple or _was_exported(orjson.loads(row.content) if row.content else None,
                                       request, plan, members, policy):
                lines.append(_deleted_line(rtype, row.res_id))
        if lines:
            yield lines


def write_export(store: SqlStore, request: ExportRequest, out_dir: Path, *,
                 access: ExportAccess | None = None, transaction_time: str | None = None,
                 max_lines: int = 100_000, batch: int = 2000,
                 progress: Callable[[str], None] | None = None,
                 on_written: Callable[[int], None] | None = None) -> ExportResult:
    """Write the NDJSON files of an export into ``out_dir``; return what was written.

    ``transaction_time`` defaults to a fresh write barrier. ``progress`` is
    called between batches with a short message (it may raise to stop);
    ``on_written`` with the number of resources each batch wrote (progress bars).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    transaction_time = transaction_time or barrier(store).instant
    policy = access.policy() if access is not None else None
    members: set[str] | None = None
    if request.level == "group" and request.since:
        with store.engine.connect() as conn:
            members = {m for (m,) in conn.execute(_group_members(store, request.group_id or ""))}
    outputs: list[OutputFile] = []
    deleted: list[OutputFile] = []
    errors: list[str] = []
    done = 0
    for rtype in request.resolved_types():
        if rtype == AUDIT_EVENT:
            if policy is not None and not any(
                    sc.context == "system" for sc in policy.grant.scopes.covering("r", AUDIT_EVENT)):
                if request.types:
                    errors.append(_outcome_line("AuditEvent was not exported: it needs a system/ "
                                                "scope allowing reading AuditEvent"))
                continue
            files = _Files(out_dir, rtype, rtype, max_lines)
            for lines in audit_export_lines(store, until=transaction_time, since=request.since,
                                            batch=batch):
                files.write(lines)
                done += len(lines)
            outputs.extend(files.close())
            continue
        try:
            plan = _plan(store, request, rtype, policy, transaction_time)
        except Forbidden:
            if request.types:
                errors.append(_outcome_line(f"{rtype} was not exported: the access token's scopes "
                                            f"do not allow reading {rtype}"))
            continue
        r = S.resource
        files = _Files(out_dir, rtype, rtype, max_lines)
        stmt = select(r.c.content).where(*plan.where, r.c.deleted == False)  # noqa: E712
        for lines in _stream_values(store, stmt, batch):
            if plan.post_filter is not None:
                lines = [line for line in lines
                         if plan.post_filter.allows("r", orjson.loads(line))]
            files.write(lines)
            done += len(lines)
            if on_written is not None:
                on_written(len(lines))
            if progress is not None:
                progress(f"Exporting {rtype}: {done} resources written")
        outputs.extend(files.close())
        if request.since:
            gone = _Files(out_dir, f"deleted{rtype}", "Bundle", max_lines)
            for lines in _deleted_since(store, request, rtype, plan, transaction_time, members,
                                        policy, batch):
                gone.write(lines)
            deleted.extend(gone.close())
    error_files: tuple[OutputFile, ...] = ()
    if errors:
        err = _Files(out_dir, "errors", "OperationOutcome", max_lines)
        err.write(errors)
        error_files = tuple(err.close())
    return ExportResult(transaction_time, tuple(outputs), tuple(deleted), error_files)


# --------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class ExportJob:
    """One export job as the status endpoint sees it."""

    id: str
    client_id: str
    status: str
    request: ExportRequest
    transaction_time: str | None = None
    progress: str | None = None
    manifest: dict[str, Any] | None = None
    error: str | None = None
    created_at: float = 0.0
    finished_at: float | None = None
    expires_at: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> "ExportJob":
        """Build from a ``sync_export_job`` row."""
        return cls(row.id, row.client_id, row.status, ExportRequest.from_json(row.request),
                   row.transaction_time, row.progress,
                   orjson.loads(row.manifest) if row.manifest else None, row.error,
                   row.created_at, row.finished_at, row.expires_at)

    @property
    def running(self) -> bool:
        """Whether the job is still queued or being worked on."""
        return self.status in _ACTIVE


def export_dir(services: "Services", job_id: str) -> Path:
    """Return the folder holding a job's files."""
    return Path(services.settings.instance_path) / "exports" / job_id


def start_export(services: "Services", request: ExportRequest, *, client_id: str,
                 access: ExportAccess | None = None, now: float | None = None) -> ExportJob:
    """Queue an export for the worker; Forbidden when the grant can read none of its types.

    A client may have ``export_max_active_jobs`` exports queued or running at
    once; one more raises Throttled (429).
    """
    now = time.time() if now is None else now
    if access is not None:
        policy = access.policy()
        readable = [t for t in request.resolved_types()
                    if policy.grant.scopes.covering("r", t)]
        if not readable:
            raise Forbidden("The access token's scopes allow reading none of the requested types",
                            issues=[Issue("No scope allows reading the requested types",
                                          code="forbidden")])
    store = services.store
    limit = sync_config(services.settings).export_max_active_jobs
    j = sync_export_job
    job_id = secrets.token_urlsafe(24)
    with store.begin() as conn:
        active = conn.execute(select(j.c.id).where(j.c.client_id == client_id,
                                                   j.c.status.in_(_ACTIVE))).all()
        if limit and len(active) >= limit:
            raise Throttled(f"This client already has {len(active)} exports in progress "
                                    f"(at most {limit}); wait for one to finish or cancel one",
                            retry_after=60)
        conn.execute(j.insert().values(
            id=job_id, client_id=client_id, status="accepted", request=request.to_json(),
            access=access.to_json() if access is not None else None, created_at=now,
            progress="Queued"))
    return ExportJob(job_id, client_id, "accepted", request, progress="Queued", created_at=now)


def _load(services: "Services", job_id: str, client_id: str) -> ExportJob:
    j = sync_export_job
    with services.store.engine.connect() as conn:
        row = conn.execute(select(j).where(j.c.id == job_id)).first()
    if row is None or row.client_id != client_id or row.status in ("cancelled", "expired"):
        raise NotFound("No such export (it may have been cancelled, expired or belong to "
                       "another client)")
    return ExportJob.from_row(row)


def get_export(services: "Services", job_id: str, client_id: str, *,
               now: float | None = None) -> ExportJob:
    """Return a job of this client; NotFound when it is unknown, another's, cancelled or expired."""
    job = _load(services, job_id, client_id)
    now = time.time() if now is None else now
    if job.expires_at is not None and job.expires_at <= now:
        raise NotFound("This export has expired; start a new one")
    return job


def cancel_export(services: "Services", job_id: str, client_id: str) -> None:
    """Cancel a job of this client and delete its files (a running export stops soon after)."""
    job = _load(services, job_id, client_id)
    j = sync_export_job
    with services.store.begin() as conn:
        conn.execute(update(j).where(j.c.id == job.id).values(
            status="cancelled", finished_at=time.time(), lease_until=None))
    if job.status != "in-progress":
        shutil.rmtree(export_dir(services, job.id), ignore_errors=True)


def export_file(services: "Services", job_id: str, client_id: str, name: str, *,
                now: float | None = None) -> Path:
    """Return the path of one file of a completed job of this client; NotFound otherwise."""
    job = get_export(services, job_id, client_id, now=now)
    listed = {f["name"] for kind in ("output", "deleted", "error")
              for f in (job.manifest or {}).get(kind, [])}
    if job.status != "completed" or name not in listed or not _FILE_NAME.match(name):
        raise NotFound(f"This export has no file {name!r}")
    path = export_dir(services, job.id) / name
    if not path.is_file():
        raise NotFound(f"The file {name!r} is no longer available")
    return path


def export_manifest(job: ExportJob, file_url: Callable[[str], str], *,
                    requires_access_token: bool = True) -> dict[str, Any]:
    """Return the completion manifest of a job, with file URLs from ``file_url(name)``."""
    stored = job.manifest or {}

    def files(kind: str) -> list[dict[str, Any]]:
        return [{"type": f["type"], "url": file_url(f["name"]), "count": f["count"]}
                for f in stored.get(kind, [])]

    return {"transactionTime": job.transaction_time, "request": job.request.request_url,
            "requiresAccessToken": requires_access_token, "output": files("output"),
            "deleted": files("deleted"), "error": files("error")}


# ------------------------------------------------------------------- worker


def _claim(services: "Services", now: float, lease: float) -> Any:
    store = services.store
    j = sync_export_job
    with store.begin() as conn:
        stmt = (select(j).where(or_(j.c.status == "accepted",
                                    and_(j.c.status == "in-progress", j.c.lease_until < now)))
                .order_by(j.c.created_at).limit(1))
        row = conn.execute(for_update(stmt, store.dialect, skip_locked=True)).first()
        if row is None:
            return None
        conn.execute(update(j).where(j.c.id == row.id).values(
            status="in-progress", started_at=now, lease_until=now + lease, progress="Starting"))
    return row


def _run_job(services: "Services", row: Any, started: float, lease: float) -> None:
    store = services.store
    cfg = sync_config(services.settings)
    j = sync_export_job
    out_dir = export_dir(services, row.id)
    shutil.rmtree(out_dir, ignore_errors=True)
    last = [0.0]

    def mine() -> Any:
        return and_(j.c.id == row.id, j.c.status == "in-progress", j.c.started_at == started)

    def progress(message: str) -> None:
        now = time.time()
        if now - last[0] < 1.0:
            return
        last[0] = now
        with store.begin() as conn:
            done = conn.execute(update(j).where(mine()).values(progress=message[:255],
                                                               lease_until=now + lease))
        if done.rowcount != 1:
            raise ExportCancelled(row.id)

    request = ExportRequest.from_json(row.request)
    try:
        result = write_export(store, request, out_dir, access=ExportAccess.from_json(row.access),
                              max_lines=cfg.export_max_lines_per_file, progress=progress)
    except ExportCancelled:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    except Exception as exc:  # noqa: BLE001 - a failed job is reported to its client
        with store.begin() as conn:
            done = conn.execute(update(j).where(mine()).values(
                status="failed", error=f"The export failed: {type(exc).__name__}",
                finished_at=time.time(), lease_until=None))
        if done.rowcount == 1:  # not merely cancelled (its folder removed) meanwhile
            log.exception("export %s failed", row.id)
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    manifest = {kind: [{"type": f.type, "name": f.name, "count": f.count} for f in files]
                for kind, files in (("output", result.output), ("deleted", result.deleted),
                                    ("error", result.error))}
    finished = time.time()
    with store.begin() as conn:
        done = conn.execute(update(j).where(mine()).values(
            status="completed", transaction_time=result.transaction_time,
            manifest=orjson.dumps(manifest).decode(), progress=f"{result.total} resources",
            finished_at=finished, expires_at=finished + cfg.export_retention_hours * 3600,
            lease_until=None))
    if done.rowcount != 1:
        shutil.rmtree(out_dir, ignore_errors=True)


def run_pending_exports(services: "Services", *, now: float | None = None, limit: int = 1) -> int:
    """Run up to ``limit`` queued exports (the worker task); return how many were run."""
    lease = sync_config(services.settings).export_lease_seconds
    count = 0
    for _ in range(limit):
        started = time.time() if now is None else now
        row = _claim(services, started, lease)
        if row is None:
            break
        _run_job(services, row, started, lease)
        count += 1
    return count


def expire_exports(services: "Services", *, now: float | None = None) -> int:
    """Delete the files of expired, cancelled and failed jobs; return how many jobs were cleaned."""
    now = time.time() if now is None else now
    j = sync_export_job
    store = services.store
    with store.engine.connect() as conn:
        expired = [r.id for r in conn.execute(select(j.c.id).where(
            j.c.status == "completed", j.c.expires_at <= now))]
        stale = [r.id for r in conn.execute(select(j.c.id).where(
            j.c.status.in_(("cancelled", "failed", "expired"))))]
    if expired:
        with store.begin() as conn:
            conn.execute(update(j).where(j.c.id.in_(expired), j.c.status == "completed")
                         .values(status="expired"))
    cleaned = 0
    for job_id in expired + stale:
        folder = export_dir(services, job_id)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            cleaned += 1
    return cleaned

"""Operator commands: ``hw-fhir export`` and ``hw-fhir outbox …`` (registered by hw_fhir.cli)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import orjson
from sqlalchemy import func, select

from ..cli_services import fail, open_services
from ..errors import HwFhirError
from ..progress import progress
from ..store import schema as S
from .export import parse_export_request, write_export
from .outbox import OUTBOX_STATUSES, ehr_targets, list_outbox, outbox_counts, retry_outbox

__all__ = ["register", "export_command", "outbox_group"]


@click.command("export")
@click.option("--type", "types", multiple=True,
              help="Resource types to export (repeat, or comma-separate); default: all.")
@click.option("--since", help="Only resources changed at or after this FHIR instant.")
@click.option("--type-filter", "type_filters", multiple=True,
              help="A _typeFilter query such as 'Observation?category=survey' (repeatable).")
@click.option("--patient", "patient_level", is_flag=True, help="Export every patient's data only.")
@click.option("--group", "group_id", help="Export the data of this Group's member patients.")
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder for the NDJSON files.")
def export_command(types: tuple[str, ...], since: str | None, type_filters: tuple[str, ...],
                   patient_level: bool, group_id: str | None, out_dir: Path) -> None:
    """Write a Bulk Data export as NDJSON files into --out, plus manifest.json."""
    if patient_level and group_id:
        fail("Use --patient or --group, not both")
    level = "group" if group_id else "patient" if patient_level else "system"
    params = [("_type", t) for t in types]
    params += [("_since", since)] if since else []
    params += [("_typeFilter", f) for f in type_filters]
    services = open_services()
    try:
        request = parse_export_request(params, level=level, group_id=group_id,
                                       base_url=services.settings.fhir_base)
        if group_id:
            services.store.read("Group", group_id)
        if out_dir.exists() and any(out_dir.iterdir()):
            fail(f"{out_dir} is not empty; choose an empty or new folder")

        with progress("Exporting", total=_estimate(services, request)) as advance:
            result = write_export(services.store, request, out_dir, on_written=advance)
        manifest = {"transactionTime": result.transaction_time, "requiresAccessToken": False,
                    **{kind: [{"type": f.type, "url": f.name, "count": f.count} for f in files]
                       for kind, files in (("output", result.output), ("deleted", result.deleted),
                                           ("error", result.error))}}
        (out_dir / "manifest.json").write_bytes(orjson.dumps(manifest,
                                                             option=orjson.OPT_INDENT_2))
    except HwFhirError as exc:
        fail(exc.message)
        return
    except OSError as exc:  # the folder cannot be made or written (a path, permissions, disk)
        fail(f"Cannot write the export into {out_dir}: {exc.strerror or exc}"
             f"{f' ({exc.filename})' if exc.filename else ''}")
        return
    finally:
        services.close()
    for f in result.output:
        click.echo(f"{f.name}\t{f.count}")
    click.echo(f"Exported {result.total} resources into {out_dir} "
               f"(transactionTime {result.transaction_time}; use it as --since next time)")


def _estimate(services: Any, request: Any) -> int:
    """Return how many current resources the export's types hold (the bar's length)."""
    r = S.resource.c
    with services.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(
            r.res_type.in_(list(request.resolved_types())), r.deleted == False)  # noqa: E712
        ).scalar() or 0)


@click.group("outbox")
def outbox_group() -> None:
    """EHR write-back outbox: failed records, retries, keys."""


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


@outbox_group.command("status")
def outbox_status() -> None:
    """Show how many records each EHR has pending, delivered and failed."""
    services = open_services()
    try:
        counts = outbox_counts(services)
        names = sorted({t.name for t in ehr_targets(services.settings)} | {e for e, _ in counts})
    finally:
        services.close()
    if not names:
        click.echo("No EHR is configured for write-back ([[ehr]] in the config file).")
        return
    for name in names:
        parts = ", ".join(f"{counts.get((name, s), 0)} {s}"
                          for s in OUTBOX_STATUSES)
        click.echo(f"{name}: {parts}")


@outbox_group.command("failed")
@click.option("--ehr", help="Only this EHR.")
@click.option("--limit", default=100, show_default=True)
def outbox_failed(ehr: str | None, limit: int) -> None:
    """List records that could not be written back, or wait for a reference the EHR can resolve (and why)."""
    services = open_services()
    try:
        rows = list_outbox(services, status=("failed", "waiting"), ehr=ehr, limit=limit)
    finally:
        services.close()
    if not rows:
        click.echo("No failed write-backs.")
        return
    for r in rows:
        click.echo(f"#{r.id}\t{r.ehr}\t{r.reference}\t{r.status}\t{r.attempts} attempts\tsince "
                   f"{_when(r.created_at)}\t{r.last_error or ''}")
    failed = sum(r.status == "failed" for r in rows)
    click.echo(f"{failed} failed, {len(rows) - failed} waiting; fix the cause, then: "
               "hw-fhir outbox retry --all")


@outbox_group.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Retry every failed record.")
@click.option("--ehr", help="Only this EHR.")
def outbox_retry(ids: tuple[int, ...], everything: bool, ehr: str | None) -> None:
    """Queue failed records again (by id, or --all)."""
    if not ids and not everything:
        fail("Name the records to retry (ids from 'hw-fhir outbox failed') or use --all")
    services = open_services()
    try:
        count = retry_outbox(services, list(ids) if ids else None, ehr=ehr)
    finally:
        services.close()
    click.echo(f"{count} records queued again")


@outbox_group.command("jwks")
@click.argument("ehr")
def outbox_jwks(ehr: str) -> None:
    """Print the public JWKS to register with EHR (backend-services auth)."""
    services = open_services()
    try:
        targets = {t.name: t for t in ehr_targets(services.settings)}
    finally:
        services.close()
    if ehr not in targets:
        fail(f"No [[ehr]] named {ehr!r} (configured: {', '.join(sorted(targets)) or 'none'})")
    click.echo(orjson.dumps(targets[ehr].public_jwks(), option=orjson.OPT_INDENT_2).decode())


def register(cli: click.Group) -> None:
    """Add the sync commands to the ``hw-fhir`` group."""
    cli.add_command(export_command)
    cli.add_command(outbox_group)

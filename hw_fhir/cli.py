"""Core commands of the ``hw-fhir`` CLI (no web framework); smart_app.cli adds serve and demo."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any, Iterator

import click
import orjson

from .checks import load_for_checks, run_checks
from .cli_services import fail, open_services
from .config import load_settings
from .errors import HwFhirError
from .plugins import build_plugin_manager, plugin_infos
from .progress import progress
from .reminders.retry import reminder_problems, retry_reminders
from .reminders import failures, run_reminders
from .services import Services
from .startup import safe_url
from .store.maintenance import refresh_statistics
from .sync.cli import register as register_sync_commands
from .worker import Worker, single_sqlite_worker, worker_name

__all__ = ["cli", "load_file", "fail", "open_services", "preflight"]


def preflight(**overrides: Any) -> None:
    """Run the start-up checks (all but the database's): print each problem on one line.

    With ``HW_FHIR_PRODUCTION=1`` any problem refuses the start (exit 1, nothing created).
    """
    try:
        settings, found = load_for_checks(**overrides)
    except HwFhirError as exc:
        fail(exc.message)
        raise  # unreachable
    problems = run_checks(settings, database=False, already=found)
    label = "Error" if settings.production else "Warning"
    for problem in problems:
        click.echo(f"{label}: {problem}", err=True)
    if problems and settings.production:
        fail(f"{len(problems)} configuration problem(s): hw-fhir does not start with "
             "HW_FHIR_PRODUCTION=1 until they are fixed (hw-fhir check lists them)")


@click.group()
@click.version_option(package_name="hw-fhir")
def cli() -> None:
    """hw-fhir: therapy homework on FHIR."""


@cli.command("check")
def check_command() -> None:
    """Check the configuration: one line per problem; exit 1 when there is any. Creates nothing."""
    try:
        settings, found = load_for_checks()
    except HwFhirError as exc:
        fail(exc.message)
        raise  # unreachable
    problems = run_checks(settings, already=found)
    for problem in problems:
        click.echo(f"Problem: {problem}")
    if problems:
        click.echo(f"{len(problems)} problem(s) found.", err=True)
        sys.exit(1)
    click.echo("Configuration OK: database migrated with the library, base URL, clients and "
               "channels checked.")


@cli.group()
def db() -> None:
    """Database commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema (keeps all data) and load the activity library."""
    services = open_services(show_progress=True)
    services.close()
    click.echo(f"Database is up to date: {safe_url(services.settings.database_url)}")


def _ndjson(path: Path, advance: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if advance is not None:
                advance(len(line))
            if line.strip():
                try:
                    yield n, orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise HwFhirError(f"line {n}: not valid JSON ({exc})") from None


def load_file(services: Services, path: Path, *,
              advance: Callable[[int], None] | None = None) -> int:
    """Load a Bundle or NDJSON file all-or-nothing; return how many resources were written.

    ``advance`` is called with the bytes read as the file is parsed (progress bars).
    """
    if path.suffix in (".ndjson", ".jsonl"):
        entries = []
        for n, resource in _ndjson(path, advance):
            if not isinstance(resource, dict) or not resource.get("resourceType"):
                raise HwFhirError(f"line {n}: not a FHIR resource")
            rtype = resource["resourceType"]
            method, url = ("PUT", f"{rtype}/{resource['id']}") if resource.get("id") else ("POST", rtype)
            entries.append({"resource": resource, "request": {"method": method, "url": url}})
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    else:
        data = path.read_bytes()
        if advance is not None:
            advance(len(data))
        try:
            bundle = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise HwFhirError(f"{path.name} is not valid JSON ({exc})") from None
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise HwFhirError(f"{path.name} is not a FHIR Bundle (use .ndjson for NDJSON)")
        if bundle.get("type") == "collection":
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": e["resource"], "request": {
                    "method": "PUT" if e.get("resource", {}).get("id") else "POST",
                    "url": e["resource"]["resourceType"] + (
                        f"/{e['resource']['id']}" if e["resource"].get("id") else "")}}
                for e in bundle.get("entry", []) if isinstance(e, dict) and isinstance(e.get("resource"), dict)]}
    response = services.store.transaction(bundle)
    refresh_statistics(services.store)  # plan the next searches with the new rows counted
    return len(response.get("entry", []))


@cli.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def load(file: Path) -> None:
    """Load FILE (a transaction/batch/collection Bundle, or NDJSON) into the store."""
    services = open_services()
    started = time.monotonic()
    try:
        with progress(f"Reading {file.name}", total=file.stat().st_size) as advance:
            count = load_file(services, file, advance=advance)
    except HwFhirError as exc:
        details = "; ".join(i.message for i in exc.issues if i.message != exc.message)
        fail(f"{exc.message}" + (f" ({details})" if details else "") + ". Nothing was loaded.")
        raise  # unreachable
    finally:
        services.close()
    seconds = time.monotonic() - started
    click.echo(f"Loaded {count} entries from {file.name} in {seconds:.1f} s "
               f"({count / max(seconds, 1e-6):,.0f} entries/s), all in one transaction")


@cli.command("plugins")
@click.option("--all", "include_builtins", is_flag=True, help="Include the built-in default_* plugins.")
def plugins_command(include_builtins: bool) -> None:
    """List the loaded plugins with their versions and hooks (JSON)."""
    try:
        pm = build_plugin_manager(load_settings())
    except HwFhirError as exc:
        fail(exc.message)
        raise  # unreachable
    infos = [{"name": p.name, "version": p.version, "distribution": p.distribution,
              "builtin": p.builtin, "hooks": list(p.hooks)}
             for p in plugin_infos(pm, include_builtins=include_builtins)]
    click.echo(orjson.dumps(infos, option=orjson.OPT_INDENT_2).decode())


@cli.group()
def reminders() -> None:
    """Reminder commands."""


@reminders.command("run")
@click.option("--once", is_flag=True, required=True,
              help="Send everything due now, then exit (for cron).")
def reminders_run(once: bool) -> None:
    """Discover, plan and send every reminder and alert due now, then exit."""
    services = open_services()
    try:
        with single_sqlite_worker(services):
            run = run_reminders(services, worker=worker_name())
    except HwFhirError as exc:
        fail(exc.message)
        raise  # unreachable
    click.echo(f"Reminders: {run.sent} sent, {run.planned} planned, {run.retried} to retry, "
               f"{run.failed} failed, {run.deferred} deferred, {run.skipped} skipped, "
               f"{run.cancelled} cancelled")


@reminders.command("retry")
@click.option("--since", default=None, metavar="WHEN",
              help="Only those that failed at or after WHEN (ISO date or date-time, UTC if no zone).")
def reminders_retry(since: str | None) -> None:
    """Queue failed and held reminders and alerts again (after fixing what made them fail)."""
    moment = None
    if since:
        try:
            moment = datetime.fromisoformat(since)
        except ValueError:
            fail(f"--since {since!r} is not a date or date-time such as 2026-03-01 or "
                 "2026-03-01T09:00")
            raise  # unreachable
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    services = open_services()
    try:
        count = retry_reminders(services.store, since=moment)
    finally:
        services.close()
    click.echo(f"{count} reminders and alerts queued again; a running worker sends them now."
               if count else "Nothing to retry.")


@reminders.command("status")
@click.option("--limit", default=50, show_default=True, type=int)
def reminders_status(limit: int) -> None:
    """Say what is not delivered (reminders, alerts, new-message notifications); exit 1 if any."""
    services = open_services()
    try:
        problems = reminder_problems(services.store, limit=limit)
    finally:
        services.close()
    if not problems:
        click.echo("Everything queued was delivered or is on its way.")
        return
    for p in problems:
        click.echo(f"{p.id} ({p.kind}, {p.status}, {p.tries} tries): {p.reason}")
    click.echo(f"{len(problems)} not delivered; fix the cause, then `hw-fhir reminders retry`.")
    raise SystemExit(1)


@reminders.command("failures")
@click.option("--limit", default=50, show_default=True, type=int)
def reminders_failures(limit: int) -> None:
    """List reminders and alerts that could not be delivered (JSON)."""
    click.echo(orjson.dumps(failures(open_services(), limit=limit), option=orjson.OPT_INDENT_2).decode())


@cli.command("worker")
@click.option("--poll", default=5.0, show_default=True, type=float,
              help="Seconds to sleep when a cycle found nothing to do.")
@click.option("--once", is_flag=True, help="Run one cycle of every job, then exit.")
def worker_command(poll: float, once: bool) -> None:
    """Run the worker: reminders, plan scheduler and every plugin's periodic jobs."""
    preflight()
    services = open_services(show_progress=True)
    worker = Worker(services, poll_seconds=poll)
    worker.install_signal_handlers()
    click.echo(f"Worker {worker.name} started ({len(worker.jobs)} jobs)")
    try:
        done = worker.run(cycles=1 if once else None)
    except HwFhirError as exc:
        fail(exc.message)
        raise  # unreachable
    finally:
        services.close()
    click.echo(f"Worker {worker.name} stopped after {done} units of work")


register_sync_commands(cli)

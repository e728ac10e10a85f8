"""Helpers for the patient-page tests: an app with the demo practice and the catalog, homework
assigned through the domain, secure links issued through hw_fhir.links, and form helpers."""

from __future__ import annotations

import atexit
import html
import re
import shutil
import tempfile
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hw_fhir import library
from hw_fhir.assignment import Assignment, assign
from hw_fhir.demo import load_demo_data
from hw_fhir.links import patient_links
from hw_fhir.schedule import Schedule

CATALOG = "http://hw-fhir.org/fhir/Questionnaire/"


_TEMPLATE: dict[str, Path] = {}


def _template_database() -> Path:
    """A migrated SQLite file holding the demo practice and the catalog, made once per run."""
    if "db" not in _TEMPLATE:
        from smart_app import create_app

        folder = Path(tempfile.mkdtemp(prefix="hw-fhir-patient-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # once per test process
        app = create_app({"TESTING": True, "instance_path": str(folder / "instance"),
                          "database_url": f"sqlite:///{folder / 'template.db'}",
                          "secret_key": "template", "secure_cookies": False})
        services = app.extensions["hw_fhir"]
        load_demo_data(services)
        library.load_catalog(services.store)
        services.close()
        _TEMPLATE["db"] = folder / "template.db"
    return _TEMPLATE["db"]


def patient_app(app_config: dict[str, Any], **overrides: Any) -> Any:
    """Create the app with the demo practice and the activity catalog loaded.

    On SQLite the database starts as a copy of a prepared one (migrating and loading
    the catalog for every test would triple the suite's time); on another database
    the data is loaded directly.
    """
    from smart_app import create_app

    config = {**app_config, "secure_cookies": False, **overrides}
    url = str(config.get("database_url", ""))
    if url.startswith("sqlite:///"):
        shutil.copyfile(_template_database(), url[len("sqlite:///"):])
    app = create_app(config)
    services = app.extensions["hw_fhir"]
    load_demo_data(services)
    if not url.startswith("sqlite:///"):
        library.load_catalog(services.store)
    return app


def give_homework(
    app: Any,
    activity: str,
    *,
    patient: str = "pat-ava",
    days: int = 1,
    wording: str = "homework",
    instructions: str = "",
    rationale: str = "",
    example: str = "",
    when: time = time(20, 0),
) -> dict[str, Any]:
    """Assign one activity (catalog id or canonical) due in ``days`` days; return the Task.

    ``days=0`` ("due today") is due at ``when`` if that is still ahead in New York, else at
    23:59 today, else (the last minutes of the day) tomorrow: assigning refuses a due time
    already past, and the suite runs at every hour of the day.
    """
    canonical = activity if "://" in activity else f"{CATALOG}{activity}|1.0.0"
    store = app.extensions["hw_fhir"].store
    zone = "America/New_York"
    now = datetime.now(ZoneInfo(zone))
    day = (now + timedelta(days=days)).date()
    soon = now + timedelta(minutes=5)
    if days == 0 and datetime.combine(day, when, now.tzinfo) <= soon:
        when = time(23, 59)
        if datetime.combine(day, when, now.tzinfo) <= soon:
            day += timedelta(days=1)
    return assign(
        store,
        Assignment(
            patient=patient,
            practitioner="dr-rivera",
            activity=canonical,
            wording=wording,
            instructions=instructions,
            rationale=rationale,
            example=example,
            schedule=Schedule(frequency="once", start=day, time_of_day=when, timezone=zone),
        ),
    ).task


def link_for(
    app: Any,
    task: dict[str, Any],
    *,
    patient: str | None = None,
    birth_date_check: bool = False,
    **kwargs: Any,
) -> str:
    """Issue a secure link for a Task; return its path ``/p/<token>``."""
    links = patient_links(app.extensions["hw_fhir"])
    patient = patient or task["for"]["reference"]
    issued = links.make_link(task["id"], patient, birth_date_check=birth_date_check, **kwargs)
    return f"/p/{issued.token}"


def csrf(page: str) -> str:
    """Return the CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return html.unescape(match.group(1))


def sign_in(client: Any, app: Any, task: dict[str, Any]) -> str:
    """Open a fresh link for the Task in this client; return the task page HTML."""
    response = client.get(link_for(app, task))
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get(response.headers["Location"])
    assert page.status_code == 200, page.get_data(as_text=True)
    return page.get_data(as_text=True)


def stored(app: Any, resource_type: str) -> list[dict[str, Any]]:
    """Every stored resource of a type."""
    from hw_fhir.store import iter_all

    return iter_all(app.extensions["hw_fhir"].store, resource_type)


def snapshot(app: Any) -> set[tuple[str, str, str]]:
    """Every stored version as (type, id, version): equal snapshots mean nothing was written."""
    store = app.extensions["hw_fhir"].store
    return {(e.resource_type, e.id, e.version_id) for e in store.history(count=100000).entries}


def today() -> date:
    """Today's date in UTC."""
    return datetime.now(timezone.utc).date()

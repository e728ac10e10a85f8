"""Helpers for the plugin, reminder, channel and worker tests: real services, patients, Tasks."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hw_fhir.channels import Delivery, Message, medium
from hw_fhir.config import load_settings
from hw_fhir.errors import DeliveryError
from hw_fhir.plugins import build_plugin_manager
from hw_fhir.reminders.tables import reminder_job
from hw_fhir.reminders import COMMUNICATION_CATEGORY_SYSTEM, REMINDER_PREFERENCES_URL, TIMEZONE_URL
from hw_fhir.services import Services, build_services

BASE_URL = "https://hw.example.org"
SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
REMINDER_CHANNEL = "http://hw-fhir.org/fhir/StructureDefinition/reminder-channel"
NO_QUIET = {"quiet_start": "00:00", "quiet_end": "00:00"}


def fhir_instant(moment: datetime) -> str:
    """Return a FHIR instant (seconds, Z)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RecordingChannel:
    """A real in-process channel: records messages; ``failures`` are raised first, in order."""

    guarantee = "test channel: records every call"

    def __init__(self, name: str = "rec", *, telecom_system: str | None = None,
                 failures: Iterable[DeliveryError] = (), status: str = "completed") -> None:
        self.name = name
        self.medium = medium("ONLINEWRIT", "online written")
        self.telecom_system = telecom_system
        self.failures = list(failures)
        self.status = status
        self.sent: list[Message] = []
        self.calls = 0

    def address(self, recipient: dict[str, Any]) -> str | None:
        if self.telecom_system is None:
            return f"{recipient.get('resourceType')}/{recipient.get('id')}"
        for point in recipient.get("telecom") or []:
            if point.get("system") == self.telecom_system:
                return str(point["value"])
        return None

    def send(self, message: Message) -> Delivery:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return Delivery(status=self.status, vendor_id=f"v-{self.calls}",
                        vendor_system="urn:test:vendor")


def channel_plugin(*channels: Any) -> Any:
    """Return a plugin object registering the given channels."""
    from hw_fhir.hookspecs import hookimpl

    class _ChannelPlugin:
        @hookimpl
        def register_channels(self) -> list[Any]:
            return list(channels)

    return _ChannelPlugin()


def make_services(tmp_path: Path, *plugins: Any, db_url: str | None = None,
                  base_url: str = BASE_URL, reminders: dict[str, Any] | None = None,
                  extra: dict[str, Any] | None = None, entry_points: bool = False,
                  **settings: Any) -> Services:
    """Real services on a database (SQLite file by default) with the given plugins."""
    more = dict(extra or {})
    more["reminders"] = {**NO_QUIET, **(reminders or {})}
    conf = load_settings(
        instance_path=str(tmp_path / "instance"), secret_key="test-secret",
        database_url=db_url or f"sqlite:///{tmp_path / 'hw.db'}", base_url=base_url,
        extra=more, **settings)
    return build_services(conf, plugins=build_plugin_manager(conf, entry_points=entry_points,
                                                             plugins=plugins))


def preferences_extension(*, channel: str | None = None, time_of_day: str | None = None,
                          quiet: tuple[str, str] | None = None,
                          opt_out: Iterable[str] = ()) -> dict[str, Any]:
    """Return the reminder-preferences extension the patient pages write."""
    subs: list[dict[str, Any]] = []
    if channel:
        subs.append({"url": "channel", "valueCode": channel})
    if time_of_day:
        subs.append({"url": "timeOfDay", "valueTime": time_of_day})
    if quiet:
        subs += [{"url": "quietStart", "valueTime": quiet[0]}, {"url": "quietEnd", "valueTime": quiet[1]}]
    subs += [{"url": "optOut", "valueCode": c} for c in opt_out]
    return {"url": REMINDER_PREFERENCES_URL, "extension": subs}


def make_patient(store: Any, pid: str, *, email: str | None = None, phone: str | None = None,
                 tz: str | None = "UTC", prefs: dict[str, Any] | None = None,
                 birth_date: str = "1990-05-17") -> dict[str, Any]:
    """Store a Patient with contact points, time zone and preferences."""
    telecom = []
    if email:
        telecom.append({"system": "email", "value": email})
    if phone:
        telecom.append({"system": "phone", "value": phone, "use": "mobile"})
    extension = []
    if tz:
        extension.append({"url": TIMEZONE_URL, "valueCode": tz})
    if prefs:
        extension.append(prefs)
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, "birthDate": birth_date,
                               "name": [{"family": "Sample", "given": ["Sam"]}]}
    if telecom:
        patient["telecom"] = telecom
    if extension:
        patient["extension"] = extension
    return store.update(patient).resource


def make_task(store: Any, patient: str, *, due: datetime, opens: datetime | None = None,
              channel: str | None = None, status: str = "requested",
              requester: str = "Practitioner/dr-test") -> dict[str, Any]:
    """Store a homework Task (SDC complete-questionnaire) for a patient."""
    task: dict[str, Any] = {
        "resourceType": "Task", "status": status, "intent": "order",
        "code": {"coding": [{"system": SDC_TEMP, "code": "complete-questionnaire"}]},
        "for": {"reference": f"Patient/{patient}"}, "owner": {"reference": f"Patient/{patient}"},
        "requester": {"reference": requester},
        "authoredOn": fhir_instant(opens or due - timedelta(days=2)),
        "restriction": {"period": {"start": fhir_instant(opens or due - timedelta(days=2)),
                                   "end": fhir_instant(due)}},
        "input": [{"type": {"coding": [{"system": SDC_TEMP, "code": "questionnaire"}]},
                   "valueCanonical": "http://hw-fhir.org/fhir/Questionnaire/mood-log|1.0.0"}],
    }
    if channel:
        task["extension"] = [{"url": REMINDER_CHANNEL, "valueCode": channel}]
    return store.create(task).resource


def announce(services: Services, task: dict[str, Any]) -> None:
    """Publish task_created for a Task written directly to the store."""
    services.events.publish("task_created", store=services.store, task=task)


def jobs(services: Services, **where: Any) -> list[Any]:
    """Return the queue rows (optionally filtered by column values), oldest due first."""
    stmt = sa.select(reminder_job).order_by(reminder_job.c.due_at, reminder_job.c.id)
    for column, value in where.items():
        stmt = stmt.where(getattr(reminder_job.c, column) == value)
    with services.store.engine.connect() as conn:
        return conn.execute(stmt).fetchall()


def communications(services: Services, *params: tuple[str, str]) -> list[dict[str, Any]]:
    """Return stored Communications matching search parameters."""
    from hw_fhir.store import iter_all

    return iter_all(services.store, "Communication", list(params))


def install_fake_distribution(root: Path, name: str, module_source: str,
                              entry_point: str | None = None, version: str = "1.2.3") -> Path:
    """Make an installed-looking distribution (dist-info + module) under ``root`` on sys.path.

    ``importlib.metadata`` finds it like any installed package, so its ``hw_fhir``
    entry point is discovered the real way. Return the folder (remove it from
    ``sys.path`` when done).
    """
    module = name.replace("-", "_")
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{module}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[hw_fhir]\n{entry_point or module} = {module}\n")
    (info / "RECORD").write_text("")
    sys.path.insert(0, str(root))
    import importlib

    importlib.invalidate_caches()
    return root


def remove_fake_distribution(root: Path, module: str) -> None:
    """Undo :func:`install_fake_distribution`."""
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.modules.pop(module, None)
    import importlib

    importlib.invalidate_caches()


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 receiving signed webhooks.

    It checks the signature (and the replay window), answers with the scripted status
    codes first (then 200), and keeps one delivery per ``Idempotency-Key``, as the
    webhook contract asks of receivers; ``requests`` counts every POST.
    """

    def __init__(self, secret: str, statuses: Iterable[int] = ()) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from hw_fhir.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

        receiver = self
        self.secret = secret
        self.statuses = list(statuses)
        self.deliveries: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self.refused = 0
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    verify_signature(receiver.secret, body, self.headers.get(TIMESTAMP_HEADER),
                                     self.headers.get(SIGNATURE_HEADER))
                except Exception:  # noqa: BLE001 - any failure is a refusal
                    with receiver.lock:
                        receiver.refused += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                key = self.headers.get("Idempotency-Key", "")
                with receiver.lock:
                    receiver.requests.append(key)
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if status == 200:
                        receiver.deliveries.setdefault(key, json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/reminders"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_risk_alert(services: Services,
                    practitioner: str = "dr-alert") -> tuple[dict[str, Any], dict[str, Any]]:
    """Store a risk Flag for patient p-risk and its stat risk-alert CommunicationRequest to
    ``practitioner`` (who gets an email address); return (flag, alert)."""
    services.store.update({"resourceType": "Practitioner", "id": practitioner,
                           "telecom": [{"system": "email", "value": f"{practitioner}@clinic.example"}]})
    make_patient(services.store, "p-risk")
    flag = services.store.create({
        "resourceType": "Flag", "status": "active", "code": {"text": "Thoughts of self-harm"},
        "subject": {"reference": "Patient/p-risk"}}).resource
    alert = services.store.create({
        "resourceType": "CommunicationRequest", "status": "active", "priority": "stat",
        "category": [{"coding": [{"system": COMMUNICATION_CATEGORY_SYSTEM, "code": "risk-alert"}]}],
        "subject": {"reference": "Patient/p-risk"},
        "recipient": [{"reference": f"Practitioner/{practitioner}"}],
        "about": [{"reference": f"Flag/{flag['id']}"},
                  {"reference": "QuestionnaireResponse/qr-1"}],
        "payload": [{"contentString": "A safety alert needs your review."}]}).resource
    return flag, alert

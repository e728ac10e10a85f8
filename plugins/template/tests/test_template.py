"""Tests of the template plugin against a real hw-fhir plugin manager and reminder run."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import hw_fhir_plugin_template as plugin
import pytest
from hw_fhir.channels import Message
from hw_fhir.config import load_settings
from hw_fhir.errors import PermanentDeliveryError
from hw_fhir.plugins import build_plugin_manager, channels
from hw_fhir.reminders import run_reminders
from hw_fhir.services import build_services


def _message(key: str = "k#1") -> Message:
    return Message(kind="reminder", purpose="before-due", channel="jsonl", to="Patient/p1",
                   recipient="Patient/p1", subject="Reminder", text="You have an activity.",
                   idempotency_key=key)


def test_channel_writes_one_line_per_key(tmp_path):
    channel = plugin.JsonLinesChannel(str(tmp_path / "out.jsonl"))
    channel.send(_message())
    channel.send(_message())  # same key: not written twice
    channel.send(_message("k#2"))
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["key"] for line in lines] == ["k#1", "k#2"]


def test_missing_folder_is_a_permanent_failure(tmp_path):
    with pytest.raises(PermanentDeliveryError):
        plugin.JsonLinesChannel(str(tmp_path / "nope" / "out.jsonl")).send(_message())


def test_registered_through_the_plugin_manager(tmp_path):
    settings = load_settings(instance_path=str(tmp_path), secret_key="s",
                             extra={"plugin_template": {"path": str(tmp_path / "o.jsonl")}})
    pm = build_plugin_manager(settings, entry_points=False, plugins=[plugin])
    assert "jsonl" in channels(pm, settings)


def test_reminders_reach_the_channel(tmp_path):
    out = tmp_path / "o.jsonl"
    settings = load_settings(
        instance_path=str(tmp_path), database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        secret_key="s", base_url="https://hw.example.org",
        extra={"plugin_template": {"path": str(out)},
               "reminders": {"quiet_start": "00:00", "quiet_end": "00:00"}})
    services = build_services(settings, plugins=build_plugin_manager(
        settings, entry_points=False, plugins=[plugin]))
    try:
        services.store.update({"resourceType": "Patient", "id": "p1"})
        now = datetime.now(timezone.utc)
        task = services.store.create({
            "resourceType": "Task", "status": "requested", "intent": "order",
            "code": {"coding": [{"system": "http://hl7.org/fhir/uv/sdc/CodeSystem/temp",
                                 "code": "complete-questionnaire"}]},
            "for": {"reference": "Patient/p1"},
            "extension": [{"url": "http://hw-fhir.org/fhir/StructureDefinition/reminder-channel",
                           "valueCode": "jsonl"}],
            "restriction": {"period": {"start": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                       "end": (now + timedelta(days=2)).strftime(
                                           "%Y-%m-%dT%H:%M:%SZ")}},
        }).resource
        services.events.publish("task_created", store=services.store, task=task)
        run_reminders(services, worker="template-test")
        line = json.loads(out.read_text().splitlines()[0])
        assert line["to"] == "Patient/p1"
        assert "https://hw.example.org/p/" in line["text"]
        assert line["text"].endswith("-- sent with hw-fhir")
    finally:
        services.close()

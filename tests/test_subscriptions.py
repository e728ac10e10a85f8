"""Topic-based Subscriptions (R4 Backport): notifications reach a local HTTP listener, in order,
with retries and backoff when it fails, heartbeats, ``$status``, and every write path covered."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest
import requests
from conftest import serve
from sync_support import Listener, flag, response, run_worker_cycle, score, task

from hw_fhir.models import validate
from hw_fhir.sync.subscriptions import (
    EXT_CONTENT,
    EXT_FILTER,
    EXT_HEARTBEAT,
    EXT_MAX_COUNT,
    EXT_TIMEOUT,
    NOTIFICATION_PROFILE,
    TOPIC_BASE,
    run_subscriptions,
)

BASE = "https://hw.example.org"
TASK_TOPIC = f"{TOPIC_BASE}/task-status"


def subscription(
    endpoint: str,
    topic: str = TASK_TOPIC,
    *,
    criteria: str | None = None,
    heartbeat: int | None = None,
    max_count: int | None = None,
    timeout: int | None = None,
    content: str = "id-only",
) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": EXT_CONTENT, "valueCode": content}]},
        "header": ["Authorization: Bearer listener-secret"],
    }
    extensions = []
    if heartbeat:
        extensions.append({"url": EXT_HEARTBEAT, "valueUnsignedInt": heartbeat})
    if max_count:
        extensions.append({"url": EXT_MAX_COUNT, "valuePositiveInt": max_count})
    if timeout:
        extensions.append({"url": EXT_TIMEOUT, "valueUnsignedInt": timeout})
    if extensions:
        channel["extension"] = extensions
    sub: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Tell the clinic's system about homework",
        "criteria": topic,
        "channel": channel,
    }
    if criteria:
        sub["_criteria"] = {"extension": [{"url": EXT_FILTER, "valueString": criteria}]}
    return sub


class Hooks:
    """The served app, its services, and the listener."""

    def __init__(self, app: Any, url: str, listener: Listener) -> None:
        self.app, self.url, self.listener = app, url, listener
        self.services = app.extensions["hw_fhir"]
        self.store = self.services.store

    def subscribe(self, sub: dict[str, Any]) -> str:
        r = requests.post(
            f"{self.url}/fhir/Subscription",
            json=sub,
            timeout=10,
            headers={"Content-Type": "application/fhir+json"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def read(self, sub_id: str) -> dict[str, Any]:
        return requests.get(f"{self.url}/fhir/Subscription/{sub_id}", timeout=10).json()

    def run(self, now: float | None = None) -> int:
        return run_subscriptions(self.services, now=now)

    def notifications(self, kind: str = "event-notification") -> list[dict[str, Any]]:
        return [b for b in self.listener.accepted() if _param(b, "type") == kind]


def _status(bundle: dict[str, Any]) -> dict[str, Any]:
    return bundle["entry"][0]["resource"]


def _param(bundle: dict[str, Any], name: str) -> Any:
    for p in _status(bundle)["parameter"]:
        if p["name"] == name:
            return next(v for k, v in p.items() if k.startswith("value"))
    return None


def _events(bundle: dict[str, Any]) -> list[tuple[int, str]]:
    out = []
    for p in _status(bundle)["parameter"]:
        if p["name"] == "notification-event":
            parts = {q["name"]: q for q in p["part"]}
            focus = parts.get("focus", {}).get("valueReference", {}).get("reference", "")
            out.append((int(parts["event-number"]["valueString"]), focus))
    return out


@pytest.fixture
def hooks(app_config: dict[str, Any]) -> Iterator[Hooks]:
    from smart_app import create_app

    app = create_app(
        {
            **app_config,
            "base_url": BASE,
            "egress_allow": "127.0.0.1",  # the test's listener is on loopback
            "extra": {
                "sync": {
                    "notification_backoff": 1,
                    "notification_timeout": 3,
                    "notification_error_after": 3,
                }
            },
        }
    )
    listener = Listener().start()
    server = serve(app)
    yield Hooks(app, server.url, listener)
    server.stop()
    listener.stop()
    app.extensions["hw_fhir"].close()


def test_handshake_then_id_only_notifications_in_order(hooks: Hooks) -> None:
    store = hooks.store
    before = store.create(task("ava")).stored  # written before the Subscription: never notified
    sub_id = hooks.subscribe(subscription(hooks.listener.url, criteria="Task?patient=Patient/ava"))
    assert hooks.run() == 1
    handshake = hooks.listener.accepted()
    assert [_param(b, "type") for b in handshake] == ["handshake"]
    assert hooks.listener.received[0].headers["Authorization"] == "Bearer listener-secret"
    assert hooks.read(sub_id)["status"] == "active"
    first = store.create(task("ava")).stored
    store.create(task("ben"))  # filtered out
    moved = store.update({**first.resource, "status": "in-progress"}).stored
    store.update({**moved.resource, "description": "no status change"})
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": task("ava", "accepted"), "request": {"method": "POST", "url": "Task"}}
        ],
    }
    via_bundle = store.transaction(bundle)["entry"][0]["response"]["location"].split("/")[1]
    store.update({**before.resource, "status": "completed"})
    assert hooks.run() >= 1
    notes = hooks.notifications()
    events = [e for b in notes for e in _events(b)]
    assert [n for n, _ in events] == [1, 2, 3, 4]
    assert [f for _, f in events] == [
        f"{BASE}/fhir/Task/{first.id}",
        f"{BASE}/fhir/Task/{first.id}",
        f"{BASE}/fhir/Task/{via_bundle}",
        f"{BASE}/fhir/Task/{before.id}",
    ]
    for b in notes:
        assert validate(b)["type"] == "history"
        assert b["meta"]["profile"] == [NOTIFICATION_PROFILE]
        assert _param(b, "subscription") == {"reference": f"{BASE}/fhir/Subscription/{sub_id}"}
        assert _param(b, "topic") == TASK_TOPIC
        assert b["entry"][0]["request"]["url"] == f"{BASE}/fhir/Subscription/{sub_id}/$status"
        assert all("resource" not in e for e in b["entry"][1:])  # id-only
    entries = [e for b in notes for e in b["entry"][1:]]
    assert [e["request"]["method"] for e in entries] == ["POST", "PUT", "POST", "PUT"]
    assert _param(notes[-1], "events-since-subscription-start") == "4"
    assert hooks.run() == 0  # nothing new: nothing sent


def test_each_notification_sent_is_an_audited_disclosure(hooks: Hooks) -> None:
    import orjson

    from hw_fhir.audit_query import search_events

    store = hooks.store
    store.update({"resourceType": "Patient", "id": "ava",
                  "name": [{"family": "Zyxwright", "given": ["Avaline"]}]})
    sub_id = hooks.subscribe(subscription(hooks.listener.url + "?token=s3cret",
                                          criteria="Task?patient=Patient/ava"))
    t0 = time.time()
    hooks.run(t0)  # the handshake carries nothing about anyone: not audited

    def worker_events() -> list[dict[str, Any]]:
        page = search_events(store, [("altid", "hw-fhir-worker"),
                                     ("subtype", "subscription-notification")])
        return [orjson.loads(content) for _, content in page.events]

    assert worker_events() == []
    made = store.create(task("ava", description="Call your sister about the bridge")).stored
    hooks.listener.fail_next = 1
    assert hooks.run(t0) == 0
    assert hooks.run(t0 + 1.1) == 1
    failed, sent = worker_events()
    assert (failed["outcome"], sent["outcome"]) == ("4", "0")
    for event in (failed, sent):
        assert event["type"]["code"] == "110106" and event["action"] == "E"
        assert event["agent"][0]["altId"] == "hw-fhir-worker"
        entities = [(e["what"]["reference"], e["role"]["code"]) for e in event["entity"]]
        assert entities == [("Patient/ava", "1"), (f"Task/{made.id}", "4"),
                            (f"Subscription/{sub_id}", "4")]
        destination = event["agent"][-1]
        assert destination["who"] == {"display": f"Subscription/{sub_id}"}
        assert destination["network"] == {"address": hooks.listener.url.split("?")[0], "type": "5"}
    text = orjson.dumps([failed, sent]).decode()
    for secret in ("Avaline", "Zyxwright", "sister", "s3cret", "listener-secret"):
        assert secret not in text
    assert search_events(store, [("patient", "Patient/ava"), ("entity", f"Task/{made.id}"),
                                 ("outcome", "0"), ("altid", "hw-fhir-worker")]).events


def test_failed_notifications_are_retried_with_backoff_in_order(hooks: Hooks) -> None:
    sub_id = hooks.subscribe(subscription(hooks.listener.url, max_count=2))
    t0 = time.time()
    hooks.run(t0)
    made = [hooks.store.create(task(f"p{i}")).stored.id for i in range(5)]
    hooks.listener.fail_next = 3
    assert hooks.run(t0) == 0  # first attempt fails
    assert hooks.run(t0 + 0.5) == 0  # not due again yet: nothing is sent
    assert len(hooks.listener.received) == 2  # the handshake and one failed attempt
    assert hooks.run(t0 + 1.1) == 0  # second failure (backoff 1 s)
    assert hooks.read(sub_id)["status"] == "active"
    assert hooks.run(t0 + 3.2) == 0  # third failure (backoff 2 s): the Subscription shows it
    shown = hooks.read(sub_id)
    assert shown["status"] == "error" and "500" in shown["error"]
    assert hooks.run(t0 + 5) == 0  # backoff is 4 s now
    assert hooks.run(t0 + 7.3) == 3  # recovered: 5 events in bundles of 2, 2, 1
    assert hooks.read(sub_id)["status"] == "active"
    failed = [r.body for r in hooks.listener.received if r.answered == 500]
    assert [[n for n, _ in _events(b)] for b in failed] == [
        [1, 2]
    ] * 3  # always the same first events
    delivered = [_events(b) for b in hooks.notifications()]
    assert [[n for n, _ in e] for e in delivered] == [[1, 2], [3, 4], [5]]
    assert [f.rsplit("/", 1)[1] for e in delivered for _, f in e] == made


def test_a_notification_that_times_out_is_sent_again(hooks: Hooks) -> None:
    # 5 s: short enough for a test, long enough for a loaded machine's normal answer
    hooks.subscribe(subscription(hooks.listener.url, timeout=5))
    t0 = time.time()
    hooks.run(t0)
    hooks.store.create(task("ava"))
    hooks.listener.gate = held = threading.Event()  # no answer until the sender gave up
    assert hooks.run(t0) == 0
    hooks.listener.gate = None
    held.set()
    assert hooks.run(t0 + 2) == 1
    numbers = [[n for n, _ in _events(b)] for b in hooks.notifications()]
    assert numbers[-1] == [1] and set(map(tuple, numbers)) == {(1,)}  # the same event, never a gap


def test_heartbeats_when_nothing_happens(hooks: Hooks) -> None:
    hooks.subscribe(subscription(hooks.listener.url, heartbeat=30))
    t0 = time.time()
    hooks.run(t0)
    assert hooks.run(t0 + 10) == 0
    assert hooks.run(t0 + 31) == 1
    beats = hooks.notifications("heartbeat")
    assert len(beats) == 1 and _param(beats[0], "events-since-subscription-start") == "0"
    assert len(beats[0]["entry"]) == 1
    hooks.store.create(task("ava"))
    assert hooks.run(t0 + 40) == 1  # an event, not a heartbeat
    assert hooks.run(t0 + 60) == 0
    assert hooks.run(t0 + 71) == 1
    assert len(hooks.notifications("heartbeat")) == 2
    assert _param(hooks.notifications("heartbeat")[-1], "events-since-subscription-start") == "1"


def test_each_topic_triggers_on_its_own_changes(hooks: Hooks) -> None:
    url = hooks.listener.url
    qr_sub = hooks.subscribe(subscription(url, f"{TOPIC_BASE}/questionnaire-response-completed"))
    obs_sub = hooks.subscribe(subscription(url, f"{TOPIC_BASE}/observation-created"))
    flag_sub = hooks.subscribe(subscription(url, f"{TOPIC_BASE}/flag-created"))
    hooks.run()
    store = hooks.store
    draft = store.create(response("ava", "in-progress")).stored
    done = store.update({**draft.resource, "status": "completed"}).stored
    store.update({**done.resource, "status": "amended"})
    direct = store.create(response("ben", "completed")).stored
    obs = store.create(score("ava", 9)).stored
    store.update({**obs.resource, "status": "amended"})
    raised = store.create(flag("ava")).stored
    hooks.run()
    by_sub: dict[str, list[str]] = {}
    for b in hooks.notifications():
        sub = _param(b, "subscription")["reference"].rsplit("/", 1)[1]
        by_sub.setdefault(sub, []).extend(
            f.rsplit("/", 2)[-2] + "/" + f.rsplit("/", 1)[1] for _, f in _events(b)
        )
    assert by_sub == {
        qr_sub: [f"QuestionnaireResponse/{draft.id}", f"QuestionnaireResponse/{direct.id}"],
        obs_sub: [f"Observation/{obs.id}"],
        flag_sub: [f"Flag/{raised.id}"],
    }


def test_status_operation(hooks: Hooks) -> None:
    sub_id = hooks.subscribe(subscription(hooks.listener.url))
    hooks.run()
    for _ in range(3):
        hooks.store.create(task("ava"))
    hooks.run()
    r = requests.get(f"{hooks.url}/fhir/Subscription/{sub_id}/$status", timeout=10)
    assert r.status_code == 200, r.text
    bundle = validate(r.json())
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    status = {p["name"]: p for p in bundle["entry"][0]["resource"]["parameter"]}
    assert status["type"]["valueCode"] == "query-status"
    assert status["status"]["valueCode"] == "active"
    assert status["events-since-subscription-start"]["valueString"] == "3"
    both = requests.get(f"{hooks.url}/fhir/Subscription/$status", params={"id": sub_id}, timeout=10)
    assert both.json()["total"] == 1
    assert (
        requests.get(f"{hooks.url}/fhir/Subscription/nope/$status", timeout=10).status_code == 404
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"criteria": "http://example.org/SubscriptionTopic/unknown"}, "Unknown topic"),
        ({"channel": {"type": "email", "endpoint": "mailto:a@example.org"}}, "not supported"),
        ({"channel": {"type": "rest-hook", "endpoint": "ftp://example.org/x"}}, "endpoint"),
        (
            {
                "_criteria": {
                    "extension": [{"url": EXT_FILTER, "valueString": "Task?authored-on=2026"}]
                }
            },
            "not supported",
        ),
        (
            {
                "channel": {
                    "type": "rest-hook",
                    "endpoint": "http://127.0.0.1:9/x",
                    "_payload": {"extension": [{"url": EXT_CONTENT, "valueCode": "full-resource"}]},
                }
            },
            "full-resource",
        ),
    ],
)
def test_unsupported_subscriptions_get_error_status(
    hooks: Hooks, change: dict[str, Any], message: str
) -> None:
    sub_id = hooks.subscribe({**subscription(hooks.listener.url), **change})
    hooks.run()
    shown = hooks.read(sub_id)
    assert shown["status"] == "error"
    assert message in shown["error"]
    hooks.store.create(task("ava"))
    hooks.run()
    assert hooks.listener.received == []


def test_turning_a_subscription_off_stops_it(hooks: Hooks) -> None:
    sub_id = hooks.subscribe(subscription(hooks.listener.url))
    hooks.run()
    hooks.store.create(task("ava"))
    assert hooks.run() == 1
    current = hooks.read(sub_id)
    off = requests.put(
        f"{hooks.url}/fhir/Subscription/{sub_id}",
        timeout=10,
        json={**current, "status": "off"},
        headers={"Content-Type": "application/fhir+json"},
    )
    assert off.status_code == 200
    hooks.store.create(task("ava"))
    assert hooks.run() == 0
    assert len(hooks.notifications()) == 1


def test_empty_payload_names_no_resource(hooks: Hooks) -> None:
    hooks.subscribe(subscription(hooks.listener.url, content="empty"))
    hooks.run()
    hooks.store.create(task("ava"))
    hooks.run()
    (note,) = hooks.notifications()
    assert len(note["entry"]) == 1
    assert _events(note) == [(1, "")]


def test_the_worker_runs_subscriptions(hooks: Hooks) -> None:
    hooks.subscribe(subscription(hooks.listener.url))
    report = run_worker_cycle(hooks.services)
    assert report.work["subscription_notifications"] == 1
    hooks.store.create(task("ava"))
    run_worker_cycle(hooks.services)
    assert [[n for n, _ in _events(b)] for b in hooks.notifications()] == [[1]]


def test_notifications_on_both_databases(tmp_path: Any, db_url: str) -> None:
    from hw_fhir.config import load_settings
    from hw_fhir.services import build_services

    settings = load_settings(
        {}, database_url=db_url, instance_path=str(tmp_path / "i"), secret_key="x", base_url=BASE,
        egress_allow="127.0.0.1",
    )
    services = build_services(settings)
    listener = Listener().start()
    try:
        sub = services.store.create(subscription(listener.url, max_count=3)).stored
        assert run_subscriptions(services) == 1
        ids = [services.store.create(task(f"p{i}")).stored.id for i in range(7)]
        assert run_subscriptions(services) == 3
        bodies = [b for b in listener.accepted() if _param(b, "type") == "event-notification"]
        events = [e for b in bodies for e in _events(b)]
        assert [n for n, _ in events] == list(range(1, 8))
        assert [f.rsplit("/", 1)[1] for _, f in events] == ids
        assert services.store.read("Subscription", sub.id).resource["status"] == "active"
    finally:
        listener.stop()
        services.close()

"""The plugin system: every hook documented and exercised, loading rules, the CLI."""

from __future__ import annotations

import inspect
import re
import types
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from hw_fhir import hookspecs, library
from hw_fhir.assignment import Assignment, assign, cancel_assignment
from hw_fhir.completion import save_draft, submit_response
from hw_fhir.errors import ConfigurationError, TransientDeliveryError
from hw_fhir.hookspecs import hookimpl
from hw_fhir.catalog.merge import catalog_pathways
from hw_fhir.plugins import (
    DEFAULT_PLUGINS,
    CatalogContent,
    ScoreExtras,
    blueprints,
    build_plugin_manager,
    channels,
    plugin_infos,
    template_dirs,
)
from hw_fhir.reminders import run_reminders, update_delivery_status
from hw_fhir.schedule import Schedule
from hw_fhir.scoring import Score, ScoreResult, score_response
from hw_fhir.worker import Worker

from reminder_support import (
    RecordingChannel,
    announce,
    channel_plugin,
    communications,
    install_fake_distribution,
    jobs,
    make_patient,
    make_risk_alert,
    make_services,
    make_task,
    remove_fake_distribution,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "plugins.md"
MOOD_LOG = "http://hw-fhir.org/fhir/Questionnaire/mood-log|1.0.0"
PHQ2 = "http://hw-fhir.org/fhir/Questionnaire/phq-2|1.0.0"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _hook_specs() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(hookspecs).items()
            if callable(fn) and hasattr(fn, "hw_fhir_spec")}


# -- the contract of the plugin system itself ----------------------------------------------


def test_every_hook_is_documented_with_its_signature():
    docs = DOCS.read_text()
    specs = _hook_specs()
    assert len(specs) >= 20
    for name, signature in specs.items():
        args = ", ".join(signature.parameters)
        assert f"### {name}({args})" in docs, f"docs/plugins.md lacks '### {name}({args})'"
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"


def test_every_hook_has_a_test():
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_plugins*.py"))
    missing = [name for name in _hook_specs() if f"def test_hook_{name}(" not in tests]
    assert not missing, f"hooks without a test_hook_<name>: {missing}"


def _doc_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)


def test_every_doc_example_runs_and_registers():
    examples = _doc_examples()
    implemented: set[str] = set()
    for number, source in enumerate(examples):
        module = types.ModuleType(f"doc_example_{number}")
        exec(compile(source, f"docs/plugins.md example {number}", "exec"), module.__dict__)
        if "@hookimpl" not in source:
            continue
        pm = build_plugin_manager(entry_points=False, plugins=[module])
        implemented |= {c.name for c in pm.get_hookcallers(module) or []}
    assert implemented == set(_hook_specs())


def test_a_misspelt_hook_is_refused_with_the_plugin_name():
    class Typo:
        @hookimpl
        def register_chanels(self):
            return []

    with pytest.raises(ConfigurationError, match="register_chanels"):
        build_plugin_manager(entry_points=False, plugins=[Typo()])


def test_built_in_plugins_are_registered_like_any_plugin():
    pm = build_plugin_manager(entry_points=False)
    names = [info.name for info in plugin_infos(pm, include_builtins=True)]
    assert names == sorted(DEFAULT_PLUGINS)
    assert plugin_infos(pm) == []


PLUGIN_SOURCE = '''
from hw_fhir.hookspecs import hookimpl

@hookimpl
def register_template_dirs():
    return ["/srv/fake-templates"]

@hookimpl
def database_upgraded(services):
    services.store.update({"resourceType": "Practitioner", "id": "from-fake-plugin"})
'''


@pytest.fixture
def fake_plugin(tmp_path):
    root = install_fake_distribution(tmp_path / "site", "hw-fhir-fake", PLUGIN_SOURCE,
                                     entry_point="fake")
    yield "fake"
    remove_fake_distribution(root, "hw_fhir_fake")


def test_installed_entry_points_load_unless_hw_fhir_plugins_excludes_them(fake_plugin, monkeypatch):
    monkeypatch.delenv("HW_FHIR_PLUGINS", raising=False)
    info = {p.name: p for p in plugin_infos(build_plugin_manager())}
    assert info["fake"].version == "1.2.3" and info["fake"].distribution == "hw-fhir-fake"
    assert info["fake"].hooks == ("database_upgraded", "register_template_dirs")
    monkeypatch.setenv("HW_FHIR_PLUGINS", "some-other-plugin")
    assert "fake" not in {p.name for p in plugin_infos(build_plugin_manager())}
    monkeypatch.setenv("HW_FHIR_PLUGINS", "none")
    assert plugin_infos(build_plugin_manager()) == []
    monkeypatch.setenv("HW_FHIR_PLUGINS", "hw-fhir-fake")  # by distribution name
    assert "fake" in {p.name for p in plugin_infos(build_plugin_manager())}


def test_cli_lists_plugins_with_versions_and_hooks(fake_plugin, monkeypatch, tmp_path):
    monkeypatch.delenv("HW_FHIR_PLUGINS", raising=False)
    monkeypatch.setenv("HW_FHIR_INSTANCE_PATH", str(tmp_path / "inst"))
    from hw_fhir.cli import cli

    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert '"name": "fake"' in result.output and '"version": "1.2.3"' in result.output
    assert "hw_fhir.default_channels" not in result.output
    everything = CliRunner().invoke(cli, ["plugins", "--all"])
    assert "hw_fhir.default_channels" in everything.output and "register_channels" in everything.output


# -- one test per hook ---------------------------------------------------------------------


def test_hook_register_channels(tmp_path):
    mine = RecordingChannel("push")
    replacement = RecordingChannel("email")
    services = make_services(tmp_path, channel_plugin(mine, replacement))
    found = channels(services.plugins, services.settings)
    assert found["push"] is mine
    assert found["email"] is replacement  # a plugin's channel replaces the built-in one
    services.close()


def _due_task(services, pid="p1", **kw):
    make_patient(services.store, pid, email=f"{pid}@example.org")
    task = make_task(services.store, pid, due=NOW + timedelta(days=2), opens=NOW - timedelta(hours=1), **kw)
    announce(services, task)
    return task


def test_hook_channel_for(tmp_path):
    a, b = RecordingChannel("a"), RecordingChannel("b")

    class PickB:
        @hookimpl
        def channel_for(self, recipient, channels):
            return "b" if recipient["id"] == "p1" and "b" in channels else None

    services = make_services(tmp_path, channel_plugin(a, b), PickB())
    _due_task(services, "p1", channel="a")  # the plugin wins over the Task's own choice
    _due_task(services, "p2", channel="a")  # the plugin declines: the built-in choice applies
    run_reminders(services, worker="w")
    assert [m.recipient for m in b.sent] == ["Patient/p1"]
    assert [m.recipient for m in a.sent] == ["Patient/p2"]
    services.close()


def test_hook_prepare_message(tmp_path):
    rec = RecordingChannel("rec")

    class Spanish:
        @hookimpl
        def prepare_message(self, message, task):
            message.subject = "Recordatorio"
            message.text = f"Tiene una actividad: {message.link}"
            message.headers["X-Task-Seen"] = "yes" if task else "no"

    services = make_services(tmp_path, channel_plugin(rec), Spanish())
    _due_task(services, channel="rec")
    run_reminders(services, worker="w")
    sent = rec.sent[0]
    assert sent.subject == "Recordatorio" and sent.text.startswith("Tiene una actividad: https://")
    # the built-in text's language is declared; the plugin's own header is kept beside it
    assert sent.headers == {"X-Task-Seen": "yes", "Content-Language": "en"}
    stored = communications(services)[0]
    assert stored["payload"][0]["contentString"] == sent.text  # what was sent is recorded
    services.close()


def test_hook_reminder_sent(tmp_path):
    rec = RecordingChannel("rec")
    seen = []

    class Listener:
        @hookimpl
        def reminder_sent(self, communication, request, task, message):
            seen.append((communication, request, task, message))

    services = make_services(tmp_path, channel_plugin(rec), Listener())
    task = _due_task(services, channel="rec")
    run_reminders(services, worker="w")
    communication, request, got_task, message = seen[0]
    assert communication["status"] == "completed"
    assert communication["partOf"] == [{"reference": f"CommunicationRequest/{request['id']}"}]
    assert got_task["id"] == task["id"] and message is rec.sent[0]
    assert services.store.read("Communication", communication["id"]).resource == communication
    services.close()


def test_hook_reminder_failed(tmp_path):
    rec = RecordingChannel("rec", failures=[TransientDeliveryError("vendor down")])
    seen = []

    class Listener:
        @hookimpl
        def reminder_failed(self, communication, error, permanent):
            seen.append((communication, error, permanent))

    services = make_services(tmp_path, channel_plugin(rec), Listener())
    _due_task(services, channel="rec")
    run_reminders(services, worker="w")
    communication, error, permanent = seen[0]
    assert permanent is False and error.message == "vendor down"
    assert communication["status"] == "not-done"
    assert communication["statusReason"]["text"] == "vendor down"
    services.close()


def test_hook_delivery_status_changed(tmp_path):
    rec = RecordingChannel("rec", status="in-progress")
    seen = []

    class Listener:
        @hookimpl
        def delivery_status_changed(self, communication, previous_status):
            seen.append((communication["status"], previous_status))

    services = make_services(tmp_path, channel_plugin(rec), Listener())
    _due_task(services, channel="rec")
    run_reminders(services, worker="w")
    assert communications(services)[0]["status"] == "in-progress"
    update_delivery_status(services, vendor_system="urn:test:vendor", vendor_id="v-1",
                           status="completed")
    # an out-of-order "still sending" callback never moves it back
    update_delivery_status(services, vendor_system="urn:test:vendor", vendor_id="v-1",
                           status="in-progress")
    assert seen == [("completed", "in-progress")]
    assert communications(services)[0]["status"] == "completed"
    services.close()


VENDOR_URL = "http://vendor.example.org/fhir/Questionnaire/wellbeing-3"
VENDOR_Q = {"resourceType": "Questionnaire", "url": VENDOR_URL, "version": "1.0.0", "status": "active",
            "item": [{"linkId": f"q{i}", "type": "integer", "text": f"Item {i}"} for i in (1, 2, 3)]}


def _vendor_response(*values):
    return {"resourceType": "QuestionnaireResponse", "status": "completed",
            "questionnaire": f"{VENDOR_URL}|1.0.0",
            "item": [{"linkId": f"q{i}", "answer": [{"valueInteger": v}]}
                     for i, v in enumerate(values, start=1)]}


def _wellbeing(questionnaire, response):
    if questionnaire.get("url") != VENDOR_URL:
        return None
    total = sum(a["valueInteger"] for item in response["item"] for a in item["answer"])
    score = Score(key="total", value=total)
    return ScoreResult(questionnaire=VENDOR_URL, instrument="wellbeing-3", total=score, scores=(score,))


def test_hook_register_scorers():
    class Vendor:
        @hookimpl
        def register_scorers(self):
            return [_wellbeing]

    pm = build_plugin_manager(entry_points=False, plugins=[Vendor()])
    result = score_response(VENDOR_Q, _vendor_response(1, 2, 4), plugins=pm)
    assert result.instrument == "wellbeing-3" and result.value == 7
    # without the plugin, the generic path knows nothing about it
    assert score_response(VENDOR_Q, _vendor_response(1, 2, 4)).instrument is None


def _phq2(first: int, second: int):
    from hw_fhir.catalog import get_questionnaire

    questionnaire = get_questionnaire("phq-2")
    options = [o["valueCoding"] for o in questionnaire["item"][1]["answerOption"]]
    response = {"resourceType": "QuestionnaireResponse", "status": "completed",
                "questionnaire": PHQ2,
                "item": [{"linkId": "phq2-1", "answer": [{"valueCoding": options[first]}]},
                         {"linkId": "phq2-2", "answer": [{"valueCoding": options[second]}]}]}
    return questionnaire, response


def test_hook_score_for():
    questionnaire, response = _phq2(3, 3)
    builtin = score_response(questionnaire, response, plugins=build_plugin_manager(entry_points=False))
    assert builtin.instrument == "phq-2" and builtin.value == 6

    class Override:
        @hookimpl
        def score_for(self, questionnaire, response):
            if "phq-2" in questionnaire.get("url", ""):
                return ScoreResult(questionnaire=questionnaire["url"], instrument="vendor-phq-2")
            return None

    pm = build_plugin_manager(entry_points=False, plugins=[Override()])
    assert score_response(questionnaire, response, plugins=pm).instrument == "vendor-phq-2"


def test_hook_interpret_score():
    class Extra:
        @hookimpl
        def interpret_score(self, result):
            if result.instrument == "phq-2" and (result.value or 0) >= 3:
                return ScoreExtras(notes=("Follow up with a PHQ-9.",))
            return None

    pm = build_plugin_manager(entry_points=False, plugins=[Extra()])
    positive = score_response(*_phq2(2, 2), plugins=pm)
    negative = score_response(*_phq2(0, 1), plugins=pm)
    assert positive.notes[-1] == "Follow up with a PHQ-9."
    assert "Follow up with a PHQ-9." not in negative.notes
    assert positive.interpretation is not None  # the scorer's own band is kept


def test_hook_risk_raised(tmp_path):
    email = RecordingChannel("email", telecom_system="email")
    heard = []

    class Pager:
        @hookimpl
        def risk_raised(self, flag, alert):
            heard.append((flag["id"], alert["id"]))

    services = make_services(tmp_path, channel_plugin(email), Pager())
    flag, alert = make_risk_alert(services)
    services.plugins.hook.risk_raised(store=services.store, flag=flag, response=None, task=None,
                                      alert=alert, services=services)
    assert heard == [(flag["id"], alert["id"])]
    assert [j.kind for j in jobs(services)] == ["alert"]  # queued at once by the built-in
    run_reminders(services, worker="w", discover=False)
    assert [m.to for m in email.sent] == ["dr-alert@clinic.example"]
    assert email.sent[0].priority == "stat"
    assert services.store.read("CommunicationRequest", alert["id"]).resource["status"] == "completed"
    services.close()


@pytest.fixture
def domain(tmp_path):
    rec = RecordingChannel("rec")
    heard: list[tuple[str, dict]] = []

    class Listener:
        @hookimpl
        def task_created(self, task):
            heard.append(("task_created", {"task": task}))

        @hookimpl
        def task_status_changed(self, task, previous_status):
            heard.append(("task_status_changed", {"task": task, "previous": previous_status}))

        @hookimpl
        def response_saved(self, response, task):
            heard.append(("response_saved", {"response": response, "task": task}))

        @hookimpl
        def response_completed(self, response, questionnaire, amended):
            heard.append(("response_completed", {"response": response, "q": questionnaire,
                                                  "amended": amended}))

        @hookimpl
        def plan_created(self, plan, tasks):
            heard.append(("plan_created", {"plan": plan, "tasks": tasks}))

    services = make_services(tmp_path, channel_plugin(rec), Listener())
    library.load_catalog(services.store)
    make_patient(services.store, "pat-1", email="pat@example.org")
    yield services, heard, rec
    services.close()


def _one_off(services, activity=MOOD_LOG):
    due_day = (NOW + timedelta(days=3)).date()
    return assign(services.store, Assignment(
        patient="pat-1", practitioner="Practitioner/dr-1", activity=activity, reminder_channel="rec",
        schedule=Schedule(frequency="once", start=due_day, time_of_day=time(18, 0), timezone="UTC")),
        events=services.events).task


def test_hook_task_created(domain):
    services, heard, rec = domain
    task = _one_off(services)
    assert [name for name, _ in heard] == ["task_created"]
    assert heard[0][1]["task"]["id"] == task["id"]
    assert [j.id for j in jobs(services)] == [f"plan/{task['id']}"]  # the built-in reacted too
    run_reminders(services, worker="w")
    assert [m.purpose for m in rec.sent] == ["assigned"]


def test_hook_task_status_changed(domain):
    services, heard, rec = domain
    task = _one_off(services)
    run_reminders(services, worker="w")  # plans: assigned sent, before-due and overdue pending
    assert {j.status for j in jobs(services, kind="reminder") if j.purpose != "assigned"} == {"pending"}
    cancel_assignment(services.store, f"Task/{task['id']}", events=services.events)
    assert heard[-1][0] == "task_status_changed" and heard[-1][1]["previous"] == "requested"
    assert {j.status for j in jobs(services, kind="reminder") if j.purpose != "assigned"} == {"cancelled"}
    run_reminders(services, worker="w", now=NOW + timedelta(days=5))
    assert [m.purpose for m in rec.sent] == ["assigned"]
    plan = services.store.search("CommunicationRequest", [("about", f"Task/{task['id']}")]).resources
    assert plan[0]["status"] == "revoked"


def test_hook_response_saved(domain):
    services, heard, _ = domain
    task = _one_off(services, PHQ2)
    draft = {"resourceType": "QuestionnaireResponse", "status": "in-progress", "item": []}
    save_draft(services.store, task["id"], draft, patient="Patient/pat-1", events=services.events)
    saved = [kw for name, kw in heard if name == "response_saved"]
    assert saved and saved[0]["task"]["id"] == task["id"]
    assert saved[0]["response"]["status"] == "in-progress"


def test_hook_response_completed(domain):
    services, heard, _ = domain
    task = _one_off(services, PHQ2)
    run_reminders(services, worker="w")  # the plan exists, the first reminder went out
    _, response = _phq2(1, 0)
    response.pop("questionnaire")
    submit_response(services.store, task["id"], response, patient="Patient/pat-1",
                    events=services.events)
    done = [kw for name, kw in heard if name == "response_completed"]
    assert done[0]["amended"] is False and done[0]["q"]["url"].endswith("/phq-2")
    # completing the Task stopped its reminders at once and closes the plan on the next run
    later = [j.status for j in jobs(services, task_id=task["id"], kind="reminder")
             if j.purpose != "assigned"]
    assert later and set(later) == {"cancelled"}
    run_reminders(services, worker="w")
    plan = services.store.search("CommunicationRequest", [("about", f"Task/{task['id']}")]).resources
    assert plan[0]["status"] == "completed"


def test_hook_plan_created(domain):
    services, heard, _ = domain
    result = assign(services.store, Assignment(
        patient="pat-1", practitioner="Practitioner/dr-1", activity=MOOD_LOG,
        schedule=Schedule(frequency="daily", start=(NOW + timedelta(days=1)).date(), count=5,
                          time_of_day=time(20, 0), timezone="UTC")),
        events=services.events, now=NOW, horizon_days=3)
    plans = [kw for name, kw in heard if name == "plan_created"]
    assert plans[0]["plan"]["id"] == result.plan["id"]
    assert {t["id"] for t in plans[0]["tasks"]} == {t["id"] for t in result.tasks}
    assert len(jobs(services, kind="plan")) == len(result.tasks)


def test_hook_register_blueprints(tmp_path):
    from flask import Blueprint

    class Web:
        @hookimpl
        def register_blueprints(self, settings):
            bp = Blueprint("vendor_ping", __name__, url_prefix="/plugins/ping")
            bp.add_url_rule("/", "ping", lambda: {"practice": settings.practice_name})
            return [bp]

    from smart_app import create_app

    app = create_app({"TESTING": True, "instance_path": str(tmp_path / "i"), "secret_key": "s",
                      "database_url": f"sqlite:///{tmp_path / 'app.db'}", "practice_name": "Elm Clinic"})
    services = app.extensions["hw_fhir"]
    pm = build_plugin_manager(services.settings, entry_points=False, plugins=[Web()])
    for bp in blueprints(pm, services.settings):
        app.register_blueprint(bp)
    assert app.test_client().get("/plugins/ping/").get_json() == {"practice": "Elm Clinic"}
    services.close()


def test_hook_register_template_dirs(tmp_path):
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "vendor.html").write_text("Hello {{ who }}")

    class Templates:
        @hookimpl
        def register_template_dirs(self):
            return [tmp_path / "tpl"]

    pm = build_plugin_manager(entry_points=False, plugins=[Templates()])
    from jinja2 import Environment, FileSystemLoader

    env = Environment(loader=FileSystemLoader([str(p) for p in template_dirs(pm, None)]))
    assert env.get_template("vendor.html").render(who="clinic") == "Hello clinic"


WORRY_TIME = {"resourceType": "Questionnaire", "id": "vendor-worry-time",
              "url": "http://vendor.example.org/fhir/Questionnaire/worry-time", "version": "1.0.0",
              "status": "active", "title": "Worry time",
              "item": [{"linkId": "done", "type": "boolean", "text": "Did you keep worry time?"}]}
WORRY_PATHWAY = {"id": "vendor-worry", "title": "Worry time, 2 weeks",
                 "description": "Postpone worries to a daily worry time.", "problemArea": "anxiety",
                 "steps": [{"activity": "http://vendor.example.org/fhir/Questionnaire/worry-time|1.0.0",
                            "start": {"delayDays": 0},
                            "schedule": {"frequency": "daily", "count": 14}}]}


def test_hook_register_catalog(tmp_path):
    class Vendor:
        @hookimpl
        def register_catalog(self):
            return [CatalogContent(questionnaires=(WORRY_TIME,), pathways=(WORRY_PATHWAY,),
                                   source="vendor")]

    services = make_services(tmp_path, Vendor())
    services.plugins.hook.database_upgraded(services=services)
    stored = services.store.search("Questionnaire", [("url", WORRY_TIME["url"])]).resources
    assert [q["title"] for q in stored] == ["Worry time"]
    assert services.store.read("Questionnaire", "phq-9").resource["status"] == "active"  # built-in too
    ids = [p["id"] for p in catalog_pathways(services.plugins)]
    assert "vendor-worry" in ids and "insomnia-4-weeks" in ids
    services.close()


def test_hook_register_worker_tasks(tmp_path):
    ran = []

    def export_outbox(services):
        ran.append(services.settings.practice_name)
        return 3

    def broken(services):
        raise RuntimeError("boom")

    class Jobs:
        @hookimpl
        def register_worker_tasks(self):
            return [broken, export_outbox]

    services = make_services(tmp_path, Jobs(), practice_name="Oak Practice")
    worker = Worker(services, name="w-test")
    labels = [getattr(j, "__name__", "") for j in worker.jobs]
    assert labels[:2] == ["reminder_queue", "plan_scheduler"]  # built-ins first
    report = worker.run_once()
    assert ran == ["Oak Practice"] and report.work["test_hook_register_worker_tasks.<locals>.export_outbox"] == 3
    assert "boom" in next(iter(report.errors.values()))
    services.close()


def test_hook_database_upgraded(fake_plugin, tmp_path, monkeypatch):
    monkeypatch.delenv("HW_FHIR_PLUGINS", raising=False)
    monkeypatch.setenv("HW_FHIR_INSTANCE_PATH", str(tmp_path / "inst"))
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HW_FHIR_DATABASE_URL", url)
    from hw_fhir.cli import cli

    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    services = make_services(tmp_path, db_url=url)
    assert services.store.read("Practitioner", "from-fake-plugin").resource["id"] == "from-fake-plugin"
    assert services.store.read("Questionnaire", "mood-log").resource["version"] == "1.0.0"
    services.close()


def test_hook_demo_data_loaded(tmp_path):
    from hw_fhir.demo import demo_resources, load_demo_data

    class Demo:
        @hookimpl
        def demo_data_loaded(self, services):
            services.store.update({"resourceType": "Practitioner", "id": "demo-vendor"})
            return 1

    services = make_services(tmp_path, Demo())
    assert load_demo_data(services) == len(demo_resources()) + 1
    assert services.store.read("Practitioner", "demo-vendor").resource["id"] == "demo-vendor"
    services.close()


def test_the_domain_dispatcher_calls_listeners_and_hooks_even_when_one_fails(tmp_path):
    calls = []

    class Failing:
        @hookimpl
        def task_created(self, task):
            raise ValueError("plugin bug")

    class Good:
        @hookimpl
        def task_created(self, task):
            calls.append(task["id"])

    services = make_services(tmp_path, Failing(), Good())
    events = services.events
    events.subscribe("task_created", lambda task: calls.append("listener"))
    with pytest.raises(ValueError, match="plugin bug"):
        events.publish("task_created", store=services.store, task={"id": "t1", "status": "requested"})
    assert sorted(calls) == ["listener", "t1"]
    services.close()



def test_the_app_has_one_dispatcher_and_it_reaches_the_plugins(tmp_path):
    from smart_app import app_state, create_app

    app = create_app({"TESTING": True, "instance_path": str(tmp_path / "i"), "secret_key": "s",
                      "database_url": f"sqlite:///{tmp_path / 'app.db'}"})
    services = app.extensions["hw_fhir"]
    assert app_state(app).services.events is services.events  # what the views pass as events=
    assert services.events.plugins is services.plugins
    services.close()

"""Reminders are claimed, read, counted and recorded in batches: nothing lost, nothing sent twice.

A worker claims ``batch`` jobs at once, reads their Tasks, Patients and plans in one
query per type, counts them against the daily limit and stores their links before
sending, sends each, then commits every Communication and job state together.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event

import hw_fhir.reminders as reminders
import hw_fhir.reminders.batch as reminder_batch
import hw_fhir.reminders.queue as reminder_queue
from hw_fhir.channels import Delivery, Message
from hw_fhir.errors import PermanentDeliveryError, TransientDeliveryError
from hw_fhir.reminders import ATTEMPT_SYSTEM, run_reminders

from reminder_support import (
    RecordingChannel,
    announce,
    channel_plugin,
    communications,
    jobs,
    make_patient,
    make_services,
    make_task,
)

UTC = timezone.utc
NOW = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)


class FlakyChannel(RecordingChannel):
    """Records messages; fails once for the recipients named in ``fail_for`` (with that error)."""

    def __init__(self, name: str = "rec", *, fail_for: dict[str, Exception] | None = None,
                 on_send=None, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.fail_for = dict(fail_for or {})
        self.on_send = on_send
        self.keys: list[str] = []  # every key handed to send, failures included

    def send(self, message: Message) -> Delivery:
        self.keys.append(message.idempotency_key)
        if self.on_send is not None:
            self.on_send(message)
        error = self.fail_for.pop(message.recipient, None)
        if error is not None:
            self.calls += 1
            raise error
        return super().send(message)


def _homework(services, patients: list[str], *, per_patient: int = 1, channel: str = "rec"):
    tasks = []
    for pid in patients:
        make_patient(services.store, pid, email=f"{pid}@example.org")
        for _ in range(per_patient):
            task = make_task(services.store, pid, due=NOW + timedelta(days=2),
                             opens=NOW - timedelta(minutes=5), channel=channel)
            announce(services, task)
            tasks.append(task)
    return tasks


def _assigned(services):
    return {j.patient_id: j for j in jobs(services, purpose="assigned")}


def test_one_failed_send_in_a_batch_the_others_are_recorded_and_it_alone_is_retried(tmp_path, db_url):
    rec = FlakyChannel(fail_for={"Patient/p3": TransientDeliveryError("503 from vendor")})
    services = make_services(tmp_path, channel_plugin(rec), db_url=db_url)
    _homework(services, [f"p{n}" for n in range(1, 7)])
    run = run_reminders(services, worker="w", now=NOW)
    assert (run.planned, run.sent, run.retried) == (6, 5, 1)
    assigned = _assigned(services)
    assert {p for p, j in assigned.items() if j.status == "sent"} == {"p1", "p2", "p4", "p5", "p6"}
    failed = assigned["p3"]
    assert (failed.status, failed.attempt, failed.tries) == ("pending", 2, 1)
    comms = communications(services)
    assert sorted(c["status"] for c in comms) == ["completed"] * 5 + ["not-done"]
    assert all(assigned[p].communication_id for p in ("p1", "p2", "p4", "p5", "p6"))

    run_reminders(services, worker="w", now=NOW + timedelta(minutes=2))
    assert [m.recipient for m in rec.sent].count("Patient/p3") == 1
    assert rec.sent[-1].idempotency_key == f"{failed.id}#2"
    keys = [m.idempotency_key for m in rec.sent]
    assert len(keys) == len(set(keys)) == 6  # every reminder delivered once
    assert all(j.status == "sent" for j in _assigned(services).values())
    attempts = Counter(c["identifier"][0]["value"] for c in communications(services))
    assert len(attempts) == 7 and set(attempts.values()) == {1}  # one Communication per attempt
    services.close()


def test_an_attempt_that_may_have_left_is_retried_alone_with_its_key(tmp_path):
    rec = FlakyChannel(fail_for={"Patient/p2": TransientDeliveryError("timeout", maybe_sent=True)})
    services = make_services(tmp_path, channel_plugin(rec))
    _homework(services, ["p1", "p2", "p3"])
    run_reminders(services, worker="w", now=NOW)
    job = _assigned(services)["p2"]
    assert (job.status, job.attempt) == ("pending", 1)
    run_reminders(services, worker="w", now=NOW + timedelta(minutes=2))
    assert [k for k in rec.keys if k.startswith(job.id)] == [f"{job.id}#1", f"{job.id}#1"]
    assert Counter(m.recipient for m in rec.sent) == {"Patient/p1": 1, "Patient/p2": 1,
                                                       "Patient/p3": 1}
    assert len(communications(services)) == 3
    services.close()


def test_a_batch_that_cannot_be_committed_together_is_committed_one_by_one(tmp_path, monkeypatch):
    rec = RecordingChannel("rec")
    services = make_services(tmp_path, channel_plugin(rec))
    tasks = _homework(services, ["p1", "p2", "p3", "p4"])
    commit, calls = reminder_batch.commit_writes, []

    def refuse_batches(ctx, writes):
        calls.append(len(writes))
        if len(writes) > 1:
            raise RuntimeError("one bad record spoils the batch")
        return commit(ctx, writes)

    run_reminders(services, worker="w", now=NOW, limit=4)  # the plans
    for task in tasks[:2]:  # their reminders are cancelled when checked, before any send
        services.store.update(dict(task, status="cancelled"))
    monkeypatch.setattr(reminder_batch, "commit_writes", refuse_batches)
    run = run_reminders(services, worker="w", now=NOW)
    # the two cancellations and the first send are committed together (refused, then
    # one by one); the second send alone: every send is recorded before the next starts
    assert run.sent == 2 and calls == [3, 1, 1, 1, 1]
    assigned = _assigned(services)
    assert all(assigned[p].status == "sent" and assigned[p].communication_id for p in ("p3", "p4"))
    assert {assigned[p].status for p in ("p1", "p2")} == {"cancelled"}
    assert len(communications(services)) == 2
    run_reminders(services, worker="w", now=NOW + timedelta(hours=1))
    assert len(rec.sent) == 2  # nothing sent twice
    services.close()


def test_a_worker_killed_before_its_batch_is_recorded_is_taken_over_with_the_same_keys(tmp_path,
                                                                                       monkeypatch):
    rec = RecordingChannel("rec")
    services = make_services(tmp_path, channel_plugin(rec))
    _homework(services, ["p1", "p2", "p3"])
    run_reminders(services, worker="w", now=NOW, limit=3)  # the plans

    def killed(ctx, writes):
        raise SystemExit("killed")  # dies between a send and its record

    monkeypatch.setattr(reminder_batch, "commit_writes", killed)
    with pytest.raises(SystemExit):
        run_reminders(services, worker="dead", now=NOW)
    monkeypatch.undo()
    first = [m.idempotency_key for m in rec.sent]
    assert len(first) == 1 and communications(services) == []  # only the one in flight left
    assert {j.status for j in _assigned(services).values()} == {"sending"}
    assert run_reminders(services, worker="alive", now=NOW + timedelta(seconds=60)).sent == 0
    run_reminders(services, worker="alive", now=NOW + timedelta(seconds=121))  # lease ran out
    keys = sorted(m.idempotency_key for m in rec.sent[1:])
    assert len(keys) == 3 and first[0] in keys  # the one in flight again, same key: de-duplicated
    comms = communications(services)
    assert sorted(c["identifier"][0]["value"] for c in comms) == keys
    assert all(c["identifier"][0]["system"] == ATTEMPT_SYSTEM for c in comms)
    services.close()


def test_the_daily_limit_holds_for_several_patients_in_one_batch(tmp_path, db_url):
    rec = RecordingChannel("rec")
    services = make_services(tmp_path, channel_plugin(rec), db_url=db_url,
                             reminders={"max_per_day": 2})
    _homework(services, ["pa"], per_patient=3)
    _homework(services, ["pb"], per_patient=1)
    run_reminders(services, worker="w", now=NOW)
    assert Counter(m.recipient for m in rec.sent) == {"Patient/pa": 2, "Patient/pb": 1}
    waiting = [j for j in jobs(services, purpose="assigned") if j.status == "pending"]
    assert [(j.patient_id, j.last_error) for j in waiting] == [("pa", "daily limit reached")]
    services.close()


def test_an_opt_out_during_a_batch_applies_to_that_patients_next_reminder(tmp_path):
    stop = PermanentDeliveryError("21610 unsubscribed")
    stop.opt_out = True  # type: ignore[attr-defined]
    sms = FlakyChannel("sms", fail_for={"Patient/p1": stop})
    email = RecordingChannel("email", telecom_system="email")
    services = make_services(tmp_path, channel_plugin(sms, email))
    _homework(services, ["p1"], per_patient=2, channel="sms")
    run_reminders(services, worker="w", now=NOW)
    assert len(sms.keys) == 1 and sms.sent == []  # the STOP: sms never used again for p1
    assert [m.recipient for m in email.sent] == ["Patient/p1", "Patient/p1"]
    assert all(j.status == "sent" and j.channel == "email" for j in jobs(services, purpose="assigned"))
    services.close()


def test_a_batch_running_past_half_its_lease_gives_back_what_it_has_not_sent(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(reminder_batch, "monotonic", lambda: clock[0])

    def slow(message):
        clock[0] += 61  # one send takes past half of the 120 s lease

    rec = FlakyChannel(on_send=slow)
    services = make_services(tmp_path, channel_plugin(rec))
    _homework(services, ["p1", "p2", "p3"])
    run_reminders(services, worker="w", now=NOW, limit=3)  # the plans
    run = run_reminders(services, worker="w", now=NOW, limit=3)
    assert (run.sent, run.released) == (1, 2)
    given_back = [j for j in jobs(services, purpose="assigned") if j.status == "pending"]
    assert len(given_back) == 2 and all(j.attempt == 1 and j.tries == 0 for j in given_back)
    run_reminders(services, worker="w", now=NOW)
    keys = [m.idempotency_key for m in rec.sent]
    assert len(keys) == len(set(keys)) == 3
    services.close()


def test_a_batch_uses_a_few_transactions_not_several_per_reminder(tmp_path):
    rec = RecordingChannel("rec")
    services = make_services(tmp_path, channel_plugin(rec), reminders={"batch": 20})
    _homework(services, [f"p{n}" for n in range(20)])
    commits, statements = [0], [0]
    event.listen(services.store.engine, "commit", lambda conn: commits.__setitem__(0, commits[0] + 1))
    event.listen(services.store.engine, "before_cursor_execute",
                 lambda *args: statements.__setitem__(0, statements[0] + 1))
    run = run_reminders(services, worker="w", now=NOW)
    assert (run.planned, run.sent) == (20, 20)
    # discovery, then per batch: claim, plans | claim, count + links (+ empty claim), and
    # one record per send, committed before the next send (a crash repeats at most one)
    assert commits[0] <= 10 + run.sent, commits[0]  # it was two or three more per reminder
    assert statements[0] <= 300, statements[0]  # it was about 27 per reminder (540)
    services.close()


def test_claims_take_the_oldest_due_jobs_and_expired_leases_never_the_same_job_twice(tmp_path,
                                                                                   db_url):
    services = make_services(tmp_path, db_url=db_url)
    rows = [reminder_queue.job_row(f"reminder/t{n}/assigned", kind="reminder",
                                   purpose="assigned", due=NOW - timedelta(minutes=n), now=NOW,
                                   task_id=f"t{n}")
            for n in range(12)]
    rows.append(reminder_queue.job_row("reminder/later/assigned", kind="reminder",
                                       purpose="assigned", due=NOW + timedelta(minutes=1), now=NOW,
                                       task_id="later"))
    with services.store.begin() as conn:
        reminder_queue.insert_jobs(conn, rows)
    first = reminders.claim_jobs(services.store, worker="a", limit=5, lease_seconds=60, now=NOW)
    assert [j.task_id for j in first] == ["t11", "t10", "t9", "t8", "t7"]  # oldest due first
    assert {(j.status, j.worker) for j in first} == {("sending", "a")}
    second = reminders.claim_jobs(services.store, worker="b", limit=10, lease_seconds=60, now=NOW)
    assert [j.task_id for j in second] == ["t6", "t5", "t4", "t3", "t2", "t1", "t0"]  # not "later"
    # a's lease runs out: its jobs are taken over, oldest first, with the jobs due meanwhile
    later = NOW + timedelta(seconds=61)
    third = reminders.claim_jobs(services.store, worker="c", limit=3, lease_seconds=60, now=later)
    assert [j.task_id for j in third] == ["t11", "t10", "t9"]
    rest = reminders.claim_jobs(services.store, worker="c", limit=10, lease_seconds=60, now=later)
    assert sorted(j.task_id for j in rest) == ["later", "t0", "t1", "t2", "t3", "t4", "t5", "t6",
                                              "t7", "t8"]
    services.close()

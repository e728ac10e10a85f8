"""Secure patient links: signed, expiring, bound to a Task and patient, revocable, no PHI."""

from __future__ import annotations

import base64
import time
from datetime import datetime, timedelta, timezone

import pytest

from hw_fhir.errors import (
    BirthDateRequired,
    LinkExpired,
    LinkRevoked,
    LinkTampered,
    LinkWrongPatient,
)
from hw_fhir.links import LINK_PATH, MAX_BIRTH_DATE_FAILURES, PatientLinks, patient_links

from reminder_support import make_patient, make_services, make_task

DUE = datetime.now(timezone.utc) + timedelta(days=2)


@pytest.fixture
def setup(tmp_path, db_url):
    services = make_services(tmp_path, db_url=db_url, link_lifetime_hours=24)
    make_patient(services.store, "pat-link", birth_date="1984-09-30")
    make_patient(services.store, "pat-other", birth_date="1991-04-12")
    task = make_task(services.store, "pat-link", due=DUE)
    yield services, task, patient_links(services)
    services.close()


def test_a_link_opens_its_task_and_carries_no_phi(setup):
    services, task, links = setup
    issued = links.make_link(f"Task/{task['id']}", "Patient/pat-link")
    assert issued.url == f"https://hw.example.org{LINK_PATH}{issued.token}"
    assert len(issued.token) <= 50
    decoded = base64.urlsafe_b64decode(issued.token.split(".")[0] + "==")
    for secret in (task["id"], "pat-link", "1984", "Sample"):
        assert secret not in issued.url and secret.encode() not in decoded
    target = links.open_link(issued.token)
    assert (target.task_id, target.patient_id) == (task["id"], "pat-link")
    assert target.task["id"] == task["id"] and target.patient_reference == "Patient/pat-link"


def test_a_tampered_or_unknown_token_is_refused(setup):
    services, task, links = setup
    token = links.make_link(task["id"], "pat-link").token
    head, sig = token.split(".")
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    for bad in (f"{head}.{flipped}", token[:-2], "nonsense", "", "a.b.c", token + "x"):
        with pytest.raises(LinkTampered):
            links.open_link(bad)
    other_key = PatientLinks(services.store, secret_key="another-secret")
    with pytest.raises(LinkTampered):
        other_key.open_link(token)


def test_a_link_expires(setup):
    services, task, links = setup
    issued = links.make_link(task["id"], "pat-link")
    assert issued.expires_at - time.time() == pytest.approx(24 * 3600, abs=5)
    links.open_link(issued.token, now=issued.expires_at - 1)
    with pytest.raises(LinkExpired) as caught:
        links.open_link(issued.token, now=issued.expires_at)
    assert caught.value.status == 410


def test_revoked_links_stay_revoked(setup):
    services, task, links = setup
    one = links.make_link(task["id"], "pat-link")
    two = links.make_link(task["id"], "pat-link")
    links.revoke(one.token)
    with pytest.raises(LinkRevoked):
        links.open_link(one.token)
    links.open_link(two.token)
    assert links.revoke_task(f"Task/{task['id']}") == 1
    with pytest.raises(LinkRevoked):
        links.open_link(two.token)


def test_a_link_opened_by_another_patient_is_refused(setup):
    services, task, links = setup
    token = links.make_link(task["id"], "pat-link").token
    with pytest.raises(LinkWrongPatient):
        links.open_link(token, patient="Patient/pat-other")
    assert links.open_link(token, patient="Patient/pat-link").task_id == task["id"]
    # the Task moved to another patient: the old link no longer opens it
    moved = dict(services.store.read("Task", task["id"]).resource, **{"for": {"reference": "Patient/pat-other"}})
    services.store.update(moved)
    with pytest.raises(LinkWrongPatient):
        links.open_link(token)


def test_birth_date_second_factor_and_lockout(setup):
    services, task, links = setup
    token = links.make_link(task["id"], "pat-link", birth_date_check=True).token
    with pytest.raises(BirthDateRequired):
        links.open_link(token)
    with pytest.raises(LinkWrongPatient):
        links.open_link(token, dob="1991-04-12")  # another patient's birth date
    assert links.open_link(token, dob="1984-09-30").task_id == task["id"]
    for _ in range(MAX_BIRTH_DATE_FAILURES - 1):
        with pytest.raises(LinkWrongPatient):
            links.open_link(token, dob="2000-01-01")
    with pytest.raises(LinkRevoked):
        links.open_link(token, dob="2000-01-01")
    with pytest.raises(LinkRevoked):  # locked: even the right date no longer opens it
        links.open_link(token, dob="1984-09-30")


@pytest.mark.parametrize("setting", [{"link_birth_date_check": True},
                                     {"extra": {"link_birth_date_check": True}}],
                         ids=["setting", "config-file-key"])
def test_the_birth_date_check_follows_the_setting(tmp_path, setting):
    services = make_services(tmp_path, **setting)
    make_patient(services.store, "pat-link", birth_date="1984-09-30")
    task = make_task(services.store, "pat-link", due=DUE)
    token = patient_links(services).make_link(task["id"], "pat-link").token
    with pytest.raises(BirthDateRequired):
        patient_links(services).open_link(token)
    services.close()


def test_links_for_many_tasks_reuse_live_links_and_store_the_missing_ones_together(setup):
    services, task, links = setup
    other = make_task(services.store, "pat-other", due=DUE)
    third = make_task(services.store, "pat-link", due=DUE)
    live = links.make_link(task["id"], "pat-link")
    revoked = links.make_link(third["id"], "pat-link")
    links.revoke(revoked.token)
    pairs = [(task["id"], "pat-link"), (other["id"], "pat-other"), (third["id"], "pat-link")]
    with services.store.begin() as conn:  # links here live 24 h: reuse those with 1 h left
        found = links.links_for(pairs, conn=conn, min_remaining_hours=1)
    assert found[pairs[0]].token == live.token  # still live: reused
    assert found[pairs[2]].token != revoked.token  # a revoked link is never handed out again
    for (task_id, patient_id), issued in found.items():
        target = links.open_link(issued.token)
        assert (target.task_id, target.patient_id) == (task_id, patient_id)
    again = links.link_for(other["id"], "pat-other", min_remaining_hours=1)
    assert again.token == found[pairs[1]].token
    # a link expiring within min_remaining_hours is replaced
    with services.store.begin() as conn:
        fresh = links.links_for(pairs[:1], conn=conn, min_remaining_hours=1,
                                now=live.expires_at - 1800)
    assert fresh[pairs[0]].token != live.token

"""The patient portal way in (SMART standalone launch) and the rate limiter's bookkeeping."""

from __future__ import annotations

from typing import Any

from patient_support import give_homework
from smart_support import (
    Browser,
    browser_like_cookies,  # noqa: F401  (autouse fixture)
    browser,  # noqa: F401
    sandbox_app,  # noqa: F401
    sandbox_server,  # noqa: F401
)

from hw_fhir import library
from smart_app.patient.ratelimit import Limit, RateLimiter


def test_a_portal_launch_signs_the_patient_in(browser: Browser, sandbox_app: Any) -> None:
    library.load_catalog(sandbox_app.extensions["hw_fhir"].store)
    mine = give_homework(sandbox_app, "phq-9", patient="pat-ben")
    theirs = give_homework(sandbox_app, "gad-7", patient="pat-ava")
    assert browser.get("/my/").status_code == 401
    result = browser.standalone_launch("pat-ben")
    entered = browser.get(f"/my/launch?launch={result.launch_id}")
    assert entered.status_code == 302 and entered.headers["Location"].endswith("/my/")
    todo = browser.get("/my/").text
    assert f'id="task-{mine["id"]}"' in todo and f'id="task-{theirs["id"]}"' not in todo
    assert browser.get(f"/my/tasks/{mine['id']}").status_code == 200
    assert browser.get(f"/my/tasks/{theirs['id']}").status_code == 403


def test_a_launch_of_another_browser_session_or_a_clinician_does_not_sign_in(
    browser: Browser, sandbox_app: Any
) -> None:
    patient_launch = browser.standalone_launch("pat-ben")
    stranger = Browser(browser.base)
    assert stranger.get(f"/my/launch?launch={patient_launch.launch_id}").status_code == 401
    assert stranger.get("/my/").status_code == 401
    clinician = Browser(browser.base)
    ehr = clinician.ehr_launch("dr-rivera", "pat-ava")
    assert clinician.get(f"/my/launch?launch={ehr.launch_id}").status_code == 401
    assert clinician.get("/my/").status_code == 401


def test_the_rate_limiter_counts_failures_in_a_sliding_window(sql_store: Any) -> None:
    clock = [1_000_000.0]
    limiter = RateLimiter(sql_store, clock=lambda: clock[0])
    limit = Limit("dob", 3, 60)
    assert [limiter.fail(limit, "1.2.3.4") for _ in range(2)] == [1, 2]
    assert not limiter.blocked(limit, "1.2.3.4")
    limiter.fail(limit, "1.2.3.4")
    assert limiter.blocked(limit, "1.2.3.4") and not limiter.blocked(limit, "5.6.7.8")
    assert not limiter.blocked(Limit("link", 3, 60), "1.2.3.4")  # kinds are counted apart
    clock[0] += 61
    assert not limiter.blocked(limit, "1.2.3.4") and limiter.failures(limit, "1.2.3.4") == 0
    limiter.fail(limit, "1.2.3.4")
    limiter.clear(limit, "1.2.3.4")
    assert limiter.failures(limit, "1.2.3.4") == 0

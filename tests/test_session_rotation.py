"""Session fixation, over real HTTP: every privilege change gives the browser session a new id,
and a session a patient link opened ends when the link is revoked."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import requests
from conftest import serve
from patient_support import csrf, give_homework, link_for, patient_app
from smart_support import (
    Browser,
    browser_like_cookies,  # noqa: F401  (autouse fixture)
    browser,  # noqa: F401
    sandbox_app,  # noqa: F401
    sandbox_server,  # noqa: F401
)

from hw_fhir.links import patient_links

COOKIE = "hw_fhir_session"  # plain-http development name (secure_cookies off)
SECURE_COOKIE = "__Host-hw_fhir_session"


@pytest.fixture
def served(app_config: dict[str, Any]) -> Iterator[tuple[Any, str]]:
    app = patient_app(app_config)
    server = serve(app)
    yield app, server.url
    server.stop()
    app.extensions["hw_fhir"].close()


def _with_sid(base: str, sid: str, name: str = COOKIE) -> requests.Session:
    """A second browser that carries a given session id (the attacker's, or a planted one)."""
    http = requests.Session()
    http.cookies.set(name, sid, domain="127.0.0.1", path="/")
    return http


def _planted_session(base: str, link: str) -> str:
    """Attacker step: open a birth-date link page to get a fresh session id; return it."""
    attacker = requests.Session()
    page = attacker.get(base + link, allow_redirects=False)
    assert page.status_code == 200 and "csrf_token" in page.text
    return attacker.cookies[COOKIE]


def test_link_sign_in_with_birth_date_rotates_a_planted_session_id(served: tuple[Any, str]) -> None:
    app, base = served
    task = give_homework(app, "phq-9")
    link = link_for(app, task, birth_date_check=True)
    planted = _planted_session(base, link)
    victim = _with_sid(base, planted)
    form = victim.get(base + link, allow_redirects=False)
    answer = victim.post(base + link, data={"csrf_token": csrf(form.text), "dob_day": "12",
                                            "dob_month": "4", "dob_year": "1991"},
                         allow_redirects=False)
    assert answer.status_code == 302, answer.text
    new_sid = victim.cookies.get(COOKIE, domain="127.0.0.1")
    assert new_sid and new_sid != planted
    assert victim.get(base + "/my/", allow_redirects=False).status_code == 200
    attacker = _with_sid(base, planted)
    page = attacker.get(base + "/my/", allow_redirects=False)
    assert page.status_code == 401 and "Ava" not in page.text


def test_link_sign_in_rotates_and_sign_out_rotates_again(served: tuple[Any, str]) -> None:
    app, base = served
    task = give_homework(app, "phq-9")
    planted = _planted_session(base, link_for(app, task, birth_date_check=True))
    victim = _with_sid(base, planted)
    opened = victim.get(base + link_for(app, task), allow_redirects=False)
    assert opened.status_code == 302
    signed_in = victim.cookies.get(COOKIE, domain="127.0.0.1")
    assert signed_in != planted
    assert _with_sid(base, planted).get(base + "/my/").status_code == 401
    home = victim.get(base + "/my/")
    assert home.status_code == 200
    out = victim.post(base + "/my/signout", data={"csrf_token": csrf(home.text)},
                      allow_redirects=False)
    assert out.status_code == 200
    assert victim.cookies.get(COOKIE, domain="127.0.0.1") not in (signed_in, planted)
    assert _with_sid(base, signed_in).get(base + "/my/").status_code == 401


def test_revoking_a_link_ends_the_sessions_it_opened(served: tuple[Any, str]) -> None:
    app, base = served
    task = give_homework(app, "phq-9")
    phone, laptop = requests.Session(), requests.Session()
    for http in (phone, laptop):
        assert http.get(base + link_for(app, task), allow_redirects=False).status_code == 302
    other = give_homework(app, "gad-7", patient="pat-ben")
    ben = requests.Session()
    assert ben.get(base + link_for(app, other), allow_redirects=False).status_code == 302
    assert phone.get(base + "/my/").status_code == 200
    patient_links(app.extensions["hw_fhir"]).revoke_task(f"Task/{task['id']}")
    for http in (phone, laptop):
        page = http.get(base + "/my/", allow_redirects=False)
        assert page.status_code == 401 and "Ava" not in page.text
        assert http.get(base + f"/my/tasks/{task['id']}", allow_redirects=False).status_code in (401, 404)
    assert ben.get(base + "/my/").status_code == 200  # another patient's link is untouched


def test_smart_launch_completion_rotates_the_session(browser: Browser) -> None:  # noqa: F811
    launch_url = browser.open_ehr_chart()
    before = browser.http.cookies[SECURE_COOKIE]
    result = browser.launch_app(launch_url)
    after = browser.http.cookies[SECURE_COOKIE]
    assert after != before
    planted = _with_sid(browser.base, before, SECURE_COOKIE)
    assert planted.get(result.app_url, allow_redirects=False).status_code == 401
    assert browser.get(result.app_url).status_code == 200


def test_standalone_patient_launch_rotates_the_session(browser: Browser) -> None:  # noqa: F811
    portal = browser.get("/sandbox/portal")
    assert portal.status_code == 200
    sids = [browser.http.cookies[SECURE_COOKIE]]
    result = browser.standalone_launch("pat-ava")
    sids.append(browser.http.cookies[SECURE_COOKIE])
    assert len(set(sids)) == 2
    home = browser.follow(browser.get(result.app_url))
    assert home.status_code == 200
    for old in sids[:1]:
        stale = _with_sid(browser.base, old, SECURE_COOKIE)
        assert stale.get(browser.base + "/my/", allow_redirects=False).status_code == 401

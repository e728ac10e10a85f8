"""The SMART core without HTTP: scope parsing (v1, v2, granular), the access decision, the
patient compartment, GuardedStore over a real SqlStore, and the EHR registry from a config file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES

from hw_fhir.config import load_settings
from hw_fhir.errors import ConfigurationError, Forbidden
from hw_fhir.smart.authserver import AuthUser, client_from_config, narrow_scope_for_user, token_context
from hw_fhir.smart.compartment import in_compartment, matches_filters, referenced_patients
from hw_fhir.smart.guard import GuardedStore
from hw_fhir.smart.policy import AccessPolicy, Grant
from hw_fhir.smart.registry import SANDBOX_CLIENT_ID, EhrRegistration, EhrRegistry
from hw_fhir.smart.scopes import ScopeSet, grantable_scopes, parse_scope

CASES = json.loads((FIXTURES / "smart" / "scopes.json").read_text())["cases"]
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0] for c in CASES])
def test_parse_scope(text: str, expected: list[Any] | None) -> None:
    scope = parse_scope(text)
    if expected is None:
        assert scope is None
        return
    context, rtype, perms, filters = expected
    assert scope is not None
    assert (scope.context, scope.resource_type) == (context, rtype)
    assert scope.permissions == frozenset(perms)
    assert [list(f) for f in scope.filters] == filters


def test_scope_set_keeps_names_and_finds_covering_scopes() -> None:
    scopes = ScopeSet.parse("launch openid fhirUser patient/Task.rs user/*.read patient/Task.c")
    assert {"launch", "openid", "fhirUser"} <= scopes.names and "launch/patient" not in scopes
    assert [s.raw for s in scopes.covering("r", "Task")] == ["patient/Task.rs", "user/*.read"]
    assert [s.raw for s in scopes.covering("c", "Task")] == ["patient/Task.c"]
    assert scopes.covering("u", "Task") == ()
    assert scopes.contexts == {"patient", "user"}


def test_grantable_scopes_narrow_a_request_to_what_is_allowed() -> None:
    allowed = "launch openid fhirUser patient/*.cruds user/Task.rs"
    requested = ("launch openid profile patient/Task.cruds patient/Observation.rs?category=survey "
                 "user/Task.rs user/Task.cu user/Patient.rs system/*.rs")
    assert grantable_scopes(requested, allowed) == (
        "launch openid patient/Task.cruds patient/Observation.rs?category=survey user/Task.rs")
    # a filtered allowance only covers requests carrying the same filter
    assert grantable_scopes("user/Observation.rs user/Observation.rs?category=survey",
                            "user/Observation.rs?category=survey") == "user/Observation.rs?category=survey"


def test_users_narrow_what_they_can_grant_and_tokens_carry_the_context() -> None:
    patient_user = AuthUser(fhir_user="Patient/pat-ava")
    assert narrow_scope_for_user("launch/patient patient/*.rs user/*.rs system/*.rs", patient_user) == \
        "launch/patient patient/*.rs"
    clinician = AuthUser(fhir_user="Practitioner/dr-rivera", patient="pat-ben", ehr_launch=True,
                         need_patient_banner=False)
    assert narrow_scope_for_user("launch user/*.rs system/*.rs", clinician) == "launch user/*.rs"
    context = token_context(clinician, "launch openid fhirUser user/*.rs")
    assert (context["patient"], context["fhirUser"], context["need_patient_banner"]) == \
        ("pat-ben", "Practitioner/dr-rivera", False)
    assert "patient" not in token_context(clinician, "openid user/*.rs")  # no launch scope, no context
    assert token_context(patient_user, "patient/*.rs")["patient"] == "pat-ava"


# ------------------------------------------------------------ compartment


def _task(patient: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Task", "status": "requested", "intent": "order",
            "for": {"reference": f"Patient/{patient}"}, **extra}


def _obs(patient: str, category: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "subject": {"reference": f"Patient/{patient}"}}


def test_compartment_membership_and_references() -> None:
    assert in_compartment(_task("a"), "a") and not in_compartment(_task("b"), "a")
    assert in_compartment({"resourceType": "Patient", "id": "a"}, "a")
    assert not in_compartment({"resourceType": "Questionnaire", "id": "q"}, "a")
    nested = _task("a", owner={"reference": "Patient/b"},
                   input=[{"type": {"text": "x"}, "valueReference": {"reference": "http://h/fhir/Patient/c"}}])
    assert referenced_patients(nested) == {"a", "b", "c"}


def test_filter_matching_follows_search_semantics() -> None:
    survey = _obs("a", "survey")
    assert matches_filters(survey, [("category", f"{CATEGORY}|survey")])
    assert matches_filters(survey, [("category", "survey")])
    assert matches_filters(survey, [("category", "laboratory,survey")])
    assert matches_filters(survey, [("category", f"{CATEGORY}|")])
    assert not matches_filters(survey, [("category", "|survey")])
    assert not matches_filters(survey, [("category", "laboratory")])
    assert matches_filters(survey, [("subject", "Patient/a"), ("status", "final")])
    assert not matches_filters(survey, [("status", "final"), ("subject", "Patient/b")])
    assert not matches_filters(survey, [("no-such-param", "x")])  # unknown filters deny


# ----------------------------------------------------------------- policy


def _policy(scope: str, patient: str | None = None) -> AccessPolicy:
    return AccessPolicy(Grant(ScopeSet.parse(scope), "c", patient))


def test_policy_decides_per_resource() -> None:
    policy = _policy("patient/Task.rs patient/Observation.rs?category=survey", "a")
    assert policy.allows("r", _task("a")) and not policy.allows("r", _task("b"))
    assert not policy.allows("c", _task("a"))
    assert policy.allows("r", _obs("a", "survey")) and not policy.allows("r", _obs("a", "laboratory"))
    with pytest.raises(Forbidden) as raised:
        policy.check("c", _task("a"))
    assert 'scope="patient/Task.c"' in raised.value.headers["WWW-Authenticate"]  # type: ignore[attr-defined]
    assert not _policy("patient/Task.rs").allows("r", _task("a"))  # patient scopes need a launch patient
    assert _policy("user/Task.rs").allows("r", _task("b"))
    assert _policy("system/*.read").allows("s", _obs("b", "laboratory"))


def test_search_plans() -> None:
    assert _policy("user/Task.rs").search_plan("Task").extra == ()
    assert _policy("patient/Task.rs", "a").search_plan("Task").extra == (("patient", "Patient/a"),)
    assert _policy("patient/Patient.rs", "a").search_plan("Patient").extra == (("_id", "a"),)
    plan = _policy("patient/Observation.rs?category=survey", "a").search_plan("Observation")
    assert plan.extra == (("patient", "Patient/a"), ("category", "survey"))
    mixed = _policy("patient/Observation.rs?category=survey user/Observation.rs?status=final", "a")
    assert mixed.search_plan("Observation").post_filter
    assert _policy("patient/Observation.rs user/Observation.rs", "a").search_plan("Observation").extra == ()
    with pytest.raises(Forbidden):
        _policy("patient/Task.rs", "a").search_plan("Observation")


def test_guarded_store_over_sqlite(sql_store: Any) -> None:
    for pid in ("a", "b"):
        sql_store.update({"resourceType": "Patient", "id": pid})
    ta = sql_store.create(_task("a")).stored.id
    tb = sql_store.create(_task("b")).stored.id
    guarded = GuardedStore(sql_store, _policy("patient/Task.cruds patient/Patient.rs", "a"))
    assert [m.id for m in guarded.search("Task").matches] == [ta]
    assert guarded.read("Task", ta).id == ta
    with pytest.raises(Forbidden):
        guarded.read("Task", tb)
    with pytest.raises(Forbidden):
        guarded.create(_task("b"))
    with pytest.raises(Forbidden):
        guarded.update({**sql_store.read("Task", ta).resource, "for": {"reference": "Patient/b"}})
    with pytest.raises(Forbidden):
        guarded.delete("Task", tb)
    guarded.delete("Task", ta)
    assert sql_store.read("Task", tb).id == tb  # nothing of b's was touched
    history = guarded.history("Task")
    assert {e.id for e in history.entries} == {ta}


# --------------------------------------------------------------- registry


def test_registry_from_the_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = FIXTURES / "smart" / "config.toml"
    settings = load_settings(environ={"HW_FHIR_CONFIG": str(config)}, instance_path=str(tmp_path),
                             secret_key="x")
    registry = EhrRegistry.from_settings(settings)
    public = registry.lookup("https://ehr.example.org/fhir")
    assert public is not None and public.client_id == "hw-fhir" and public.client_auth == "public"
    assert registry.lookup("https://ehr.example.org/fhir/") == public
    basic = registry.lookup("https://fhir.hospital.example/r4")
    assert basic is not None and basic.client_auth == "client_secret_basic"
    assert "user/QuestionnaireResponse.cru" in basic.scope
    assert registry.lookup("https://ehr.clinic.example/fhir").client_auth == "private_key_jwt"  # type: ignore[union-attr]
    assert registry.lookup("https://evil.example/fhir") is None
    assert registry.lookup("http://127.0.0.1:5000/fhir", local_fhir_base="http://127.0.0.1:5000/fhir") is None
    clients = [client_from_config(c) for c in settings.extra["smart"]["sandbox_clients"]]
    assert clients[0].grant_types == ("client_credentials",) and clients[0].jwks_uri


def test_sandbox_registers_its_own_iss_only() -> None:
    registry = EhrRegistry(sandbox=True)
    own = registry.lookup("http://localhost:5000/fhir/", local_fhir_base="http://localhost:5000/fhir")
    assert own is not None and own.client_id == SANDBOX_CLIENT_ID and own.client_auth == "public"
    assert registry.lookup("http://elsewhere:5000/fhir", local_fhir_base="http://localhost:5000/fhir") is None


@pytest.mark.parametrize("item", [
    {"iss": "https://x.example/fhir", "client_id": "a", "client_auth": "magic"},
    {"iss": "https://x.example/fhir", "client_id": ""},
    {"iss": "x.example/fhir", "client_id": "a"},
    {"iss": "https://x.example/fhir", "client_id": "a", "client_auth": "client_secret_basic"},
    {"iss": "https://x.example/fhir", "client_id": "a", "secret": "typo"},
])
def test_bad_registrations_are_configuration_errors(item: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        EhrRegistration.from_config(item)


def test_expired_records_are_purged(sql_store: Any) -> None:
    import sqlalchemy as sa

    from hw_fhir.smart.authstore import AuthStore
    from hw_fhir.smart.sessions import WebSessionStore
    from hw_fhir.smart.tables import smart_auth_code, smart_token, smart_web_session

    auth = AuthStore(sql_store)
    auth.save_code("old-code", "c", {}, lifetime=-2 * 86400)
    auth.save_code("new-code", "c", {})
    auth.save_token(access_token="old", client_id="c", scope="", context={}, expires_in=-2 * 86400)
    auth.save_token(access_token="new", client_id="c", scope="", context={}, expires_in=60)
    sessions = WebSessionStore(sql_store)
    sessions.save("gone", {"a": 1}, lifetime=-10)
    sessions.save("kept", {"a": 2}, lifetime=60)
    auth.purge()
    sessions.purge()
    with sql_store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(smart_auth_code)).scalar_one() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(smart_token)).scalar_one() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(smart_web_session)).scalar_one() == 1
    assert auth.introspect("new") is not None and auth.introspect("old") is None
    assert sessions.load("kept") == {"a": 2} and sessions.load("gone") is None

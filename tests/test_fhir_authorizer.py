"""The one /fhir authorizer (:mod:`smart_app.fhir_auth`): every blueprint that serves FHIR data
refuses the same bad tokens — none, malformed, unknown, expired, wrong scope, another
patient — with the same status, ``WWW-Authenticate`` challenge and OperationOutcome, and
runs the same before-hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from flask import Blueprint, Response

from hw_fhir.config import load_settings
from hw_fhir.hookspecs import hookimpl
from hw_fhir.plugins import build_plugin_manager
from hw_fhir.services import build_services
from smart_app import create_app
from smart_app.fhir_auth import PUBLIC_ENDPOINTS, authorize_fhir, before_fhir_request
from smart_app.state import app_state

#: One request per FHIR-serving blueprint reading pat-ava's data ({pid}: whose).
REQUESTS = {
    "fhir": "/fhir/Patient/{pid}",
    "outcomes": "/fhir/Patient/{pid}/$measure-progress",
    "fhir_bulk": "/fhir/Group/grp-{pid}/$export",
}

#: name → (Authorization header, whose data, status, issue code, challenge error).
BAD_TOKENS = {
    "none": (None, "pat-ava", 401, "login", None),
    "malformed": ("Basic YTpi", "pat-ava", 401, "login", "invalid_request"),
    "unknown": ("Bearer not-a-token", "pat-ava", 401, "login", "invalid_token"),
    "expired": ("Bearer expired", "pat-ava", 401, "login", "invalid_token"),
    "wrong scope": ("Bearer observations-only", "pat-ava", 403, "forbidden", "insufficient_scope"),
    "other patient": ("Bearer ava", "pat-ben", 403, "forbidden", "insufficient_scope"),
}


@pytest.fixture
def app(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    """An app with /fhir authorization on, two patients, a Group each, and issued tokens."""
    application = create_app({"TESTING": True, "instance_path": str(tmp_path / "instance"),
                              "database_url": sqlite_url, "open_api": False, "secret_key": "s"})
    state = app_state(application)
    store = state.services.store
    for pid in ("pat-ava", "pat-ben"):
        store.update({"resourceType": "Patient", "id": pid})
        store.update({"resourceType": "Group", "id": f"grp-{pid}", "type": "person", "actual": True,
                      "member": [{"entity": {"reference": f"Patient/{pid}"}}]})
    ava = {"patient": "pat-ava"}
    tokens = {"ava": ("patient/*.rs", ava, 3600), "expired": ("patient/*.rs", ava, -10),
              "observations-only": ("patient/Observation.rs", ava, 3600),
              "clinician": ("user/*.rs", {"fhirUser": "Practitioner/dr-rivera"}, 3600)}
    assert state.smart_auth is not None
    for token, (scope, context, lifetime) in tokens.items():
        state.smart_auth.save_token(access_token=token, client_id="app", scope=scope,
                                    context=context, expires_in=lifetime)
    yield application
    state.services.close()


def _get(app: Any, path: str, authorization: str | None) -> Any:
    headers = {"Prefer": "respond-async"}
    if authorization:
        headers["Authorization"] = authorization
    return app.test_client().get(path, headers=headers)


@pytest.mark.parametrize("bad", list(BAD_TOKENS))
def test_every_fhir_blueprint_refuses_a_bad_token_alike(app: Any, bad: str) -> None:
    authorization, pid, status, code, error = BAD_TOKENS[bad]
    answers = {name: _get(app, path.format(pid=pid), authorization) for name, path in REQUESTS.items()}
    for name, response in answers.items():
        assert response.status_code == status, (name, response.get_data(as_text=True))
        outcome = response.get_json()
        assert outcome["resourceType"] == "OperationOutcome", name
        assert outcome["issue"][0]["code"] == code, name
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="hw-fhir"'), name
        assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge), name
    if status == 401:  # refused before any data is read: the very same answer everywhere
        assert len({(r.get_data(), r.headers["WWW-Authenticate"]) for r in answers.values()}) == 1


def test_a_good_token_passes_every_fhir_blueprint(app: Any) -> None:
    for name, path in REQUESTS.items():
        response = _get(app, path.format(pid="pat-ava"), "Bearer clinician")
        assert response.status_code in (200, 202), (name, response.get_data(as_text=True))
    assert _get(app, REQUESTS["fhir"].format(pid="pat-ava"), "Bearer ava").status_code == 200


def test_every_fhir_route_passes_the_one_authorizer(app: Any) -> None:
    protected = {name for name, funcs in app.before_request_funcs.items()
                 if name and authorize_fhir in funcs}
    assert {"fhir", "fhir_bulk", "outcomes"} <= protected
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/fhir") or rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        if rule.rule.startswith("/fhir/.well-known/"):
            continue  # discovery documents are public by specification
        blueprint = rule.endpoint.rpartition(".")[0]
        assert blueprint in protected, f"{rule.rule} ({rule.endpoint}) skips the /fhir authorizer"


def test_before_hooks_run_after_the_token_check_on_every_fhir_blueprint(app: Any) -> None:
    seen: list[str] = []

    def refuse_teapots() -> Response | None:
        seen.append(str(app_state().services.settings.open_api))
        return Response("no", status=418)

    before_fhir_request(refuse_teapots, app)
    for name, path in REQUESTS.items():
        assert _get(app, path.format(pid="pat-ava"), None).status_code == 401, name
        assert _get(app, path.format(pid="pat-ava"), "Bearer clinician").status_code == 418, name
    assert len(seen) == len(REQUESTS)


def test_a_plugin_blueprint_under_fhir_passes_the_one_authorizer(tmp_path: Path, sqlite_url: str) -> None:
    class VendorApi:
        @hookimpl
        def register_blueprints(self, settings: Any) -> list[Blueprint]:
            bp = Blueprint("vendor_fhir", __name__, url_prefix="/fhir/vendor")
            bp.add_url_rule("/ping", "ping", lambda: {"ok": True})
            return [bp]

    settings = load_settings(instance_path=str(tmp_path / "instance"), database_url=sqlite_url,
                             open_api=False, secret_key="s")
    plugins = build_plugin_manager(settings, entry_points=False, plugins=[VendorApi()])
    app = create_app({"TESTING": True}, services=build_services(settings, plugins=plugins))
    try:
        refused = app.test_client().get("/fhir/vendor/ping")
        assert refused.status_code == 401 and refused.get_json()["issue"][0]["code"] == "login"
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="hw-fhir"'
    finally:
        app_state(app).services.close()

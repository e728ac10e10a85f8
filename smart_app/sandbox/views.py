"""Sandbox pages and OAuth endpoints (thin: the work is in hw_fhir.smart and .server)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import (
    Blueprint,
    Response,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from hw_fhir.channels.demo_inbox import read_inbox
from hw_fhir.errors import InvalidInput, NotFound
from hw_fhir.smart.authserver import AuthUser
from hw_fhir.smart.keys import public_jwks
from hw_fhir.smart.scopes import ScopeSet
from hw_fhir.store.base import iter_all

from ..backend import oauth_response
from ..fhir_api import fhir_base
from ..patient import access as patient_access
from ..security import csrf_exempt
from ..state import app_state
from .context import app_base, sandbox

__all__ = ["bp"]

bp = Blueprint("sandbox", __name__)

_USER_KEY = "sandbox_user"
def _store() -> Any:
    return app_state().services.store


def _people(resource_type: str) -> list[dict[str, Any]]:
    people = [r for r in iter_all(_store(), resource_type) if r.get("active", True)]
    return sorted(people, key=lambda r: (_family(r), r.get("id", "")))


def _family(resource: dict[str, Any]) -> str:
    names = resource.get("name") or [{}]
    return str(names[0].get("family") or names[0].get("text") or "")


def _patient_in_this_browser() -> str | None:
    """The patient hw-fhir's own pages signed in in this browser (a secure link), if any.

    The demo's portal and hw-fhir share one browser session: someone who followed a secure
    link from the inbox and then opens the portal is that patient, so the portal's sign-in
    preselects them. Without one the portal preselects nobody (a choice is required):
    preselecting the first demo patient signed newcomers in as the wrong person.
    """
    return patient_access.current_patient()


def _exists(reference: str, *types: str) -> bool:
    rtype, _, rid = (reference or "").partition("/")
    if rtype not in types or not rid:
        return False
    try:
        _store().read(rtype, rid)
    except (NotFound, InvalidInput):
        return False
    return True


# ------------------------------------------------------------------ discovery


@bp.get("/sandbox/jwks.json")
def jwks() -> Response:
    """Return the public key that signs id_tokens."""
    response = jsonify(public_jwks([sandbox().signing_key]))
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/sandbox/smart-style.json")
def smart_style() -> Response:
    """Return the sandbox EHR's style hints (smart_style_url)."""
    return jsonify({"color_background": "#f6f7f9", "color_highlight": "#2456a6",
                    "color_text": "#1d2330", "font_family_body": "system-ui, sans-serif",
                    "dim_border_radius": "6px"})


# ---------------------------------------------------------------------- EHR


@bp.get("/sandbox/")
def ehr() -> Any:
    """Show the EHR: pick a clinician and a patient, then launch hw-fhir."""
    settings = app_state().services.settings
    if settings.base_url and request.url_root.rstrip("/") != settings.base_url.rstrip("/"):
        return redirect(f"{settings.base_url.rstrip('/')}/sandbox/")
    return render_template("sandbox/ehr.html", practitioners=_people("Practitioner"),
                           patients=_people("Patient"), encounters=_encounters(),
                           selected_user=session.get(_USER_KEY))


def _encounters() -> list[dict[str, Any]]:
    names = {f"Patient/{p['id']}": p for p in _people("Patient")}
    found = [e for e in iter_all(_store(), "Encounter", [("status", "planned,arrived,in-progress")])
             if (e.get("subject") or {}).get("reference") in names]
    return [{"id": e["id"], "patient": names[e["subject"]["reference"]],
             "label": ", ".join(t.get("text", "") for t in e.get("type") or []) or "Encounter",
             "start": (e.get("period") or {}).get("start", "")}
            for e in sorted(found, key=lambda e: (e["subject"]["reference"], e["id"]))]


@bp.post("/sandbox/ehr")
def ehr_launch() -> Any:
    """Create an EHR launch for the chosen clinician and patient and open it."""
    practitioner = request.form.get("practitioner", "")
    patient = request.form.get("patient", "")
    if not _exists(practitioner, "Practitioner") or not _exists(f"Patient/{patient}", "Patient"):
        raise InvalidInput("Pick a clinician and a patient from the lists")
    context: dict[str, Any] = {
        "fhirUser": practitioner, "patient": patient, "need_patient_banner": False,
        "smart_style_url": f"{app_base()}/sandbox/smart-style.json"}
    encounter = request.form.get("encounter", "")
    if encounter:
        if not _exists(f"Encounter/{encounter}", "Encounter") or (_store().read(
                "Encounter", encounter).resource.get("subject") or {}).get("reference") \
                != f"Patient/{patient}":
            raise InvalidInput("Pick an encounter of the chosen patient, or none")
        context.update(encounter=encounter, fhirContext=[{"reference": f"Encounter/{encounter}"}])
    launch_id = sandbox().auth_store.create_launch(context)
    session[_USER_KEY] = practitioner
    return redirect(url_for("sandbox.ehr_frame", launch_id=launch_id))


@bp.get("/sandbox/ehr/<launch_id>")
def ehr_frame(launch_id: str) -> Any:
    """Show the EHR chart with hw-fhir launched in an iframe."""
    context = sandbox().auth_store.get_launch(launch_id)
    if context is None:
        abort(404, "This launch has expired; start a new one from the sandbox EHR.")
    patient = _store().read("Patient", context["patient"]).resource
    user = _store().read(*context["fhirUser"].split("/", 1)).resource
    app_url = f"{app_base()}/launch?" + urlencode({"iss": fhir_base(), "launch": launch_id})
    return render_template("sandbox/ehr_frame.html", patient=patient, user=user,
                           portal=user["resourceType"] == "Patient", app_url=app_url,
                           launch_id=launch_id)


@bp.route("/sandbox/portal", methods=["GET", "POST"])
def portal() -> Any:
    """Show the patient portal: sign in as a patient, then open hw-fhir (standalone launch)."""
    if request.method == "POST":
        patient = request.form.get("patient", "")
        if not _exists(f"Patient/{patient}", "Patient"):
            raise InvalidInput("Pick a patient from the list")
        session[_USER_KEY] = f"Patient/{patient}"
        return redirect(url_for("sandbox.portal"))
    user = session.get(_USER_KEY) or ""
    me = _store().read("Patient", user.split("/", 1)[1]).resource if _exists(user, "Patient") else None
    app_url = f"{app_base()}/launch?" + urlencode({"iss": fhir_base()})
    chosen = f"Patient/{me['id']}" if me else _patient_in_this_browser()
    return render_template("sandbox/portal.html", patients=_people("Patient"), me=me, app_url=app_url,
                           chosen=chosen)


@bp.post("/sandbox/portal/launch")
def portal_launch() -> Any:
    """Open hw-fhir inside the portal for the signed-in patient (an EHR launch, fhirUser a Patient)."""
    user = session.get(_USER_KEY) or ""
    if not _exists(user, "Patient"):
        raise InvalidInput("Sign in to the portal as a patient first")
    launch_id = sandbox().auth_store.create_launch({
        "fhirUser": user, "patient": user.split("/", 1)[1], "need_patient_banner": False,
        "smart_style_url": f"{app_base()}/sandbox/smart-style.json"})
    return redirect(url_for("sandbox.ehr_frame", launch_id=launch_id))


# -------------------------------------------------------------------- OAuth


def _oauth_error_page(error: OAuth2Error) -> Any:
    return render_template("sandbox/error.html", error=error), error.status_code or 400


@bp.route("/sandbox/authorize", methods=["GET", "POST"])
def authorize() -> Any:
    """Ask the signed-in user to approve the app's request (the SMART authorize endpoint)."""
    server = sandbox().server
    try:
        grant = server.get_consent_grant(end_user=None)
    except OAuth2Error as error:
        if error.redirect_uri:
            return server.handle_error_response(None, error)
        return _oauth_error_page(error)
    data = request.args
    launch = sandbox().auth_store.get_launch(data["launch"]) if data.get("launch") else None
    requested = ScopeSet.parse(grant.request.scope)
    needs_patient = launch is None and "launch/patient" in requested
    auth_store, scope = sandbox().auth_store, grant.request.scope or ""
    if request.method == "GET":
        known = _known_user(launch, needs_patient)
        if known and auth_store.has_consent(known.fhir_user, grant.client.client_id, scope):
            # allowed before by this user for this app and these scopes: not asked again
            return server.create_authorization_response(grant_user=known, grant=grant)
        return render_template(
            "sandbox/authorize.html", client=grant.client, scopes=describe_scopes(scope),
            launch=launch, needs_patient=needs_patient, bare=launch is not None,
            launch_user=_resource(launch["fhirUser"]) if launch else None,
            launch_patient=_resource(f"Patient/{launch['patient']}") if launch else None,
            practitioners=_people("Practitioner"), patients=_people("Patient"),
            selected_user=(launch or {}).get("fhirUser") or session.get(_USER_KEY)
            or _patient_in_this_browser(),
            selected_patient=(launch or {}).get("patient"))
    if request.form.get("decision") != "approve":
        return server.create_authorization_response(grant_user=None, grant=grant)
    user = _approving_user(launch, needs_patient, request.form.get("user", ""))
    session[_USER_KEY] = user.fhir_user
    auth_store.remember_consent(user.fhir_user, grant.client.client_id, scope)
    return server.create_authorization_response(grant_user=user, grant=grant)


def _resource(reference: str) -> dict[str, Any] | None:
    if not _exists(reference, "Practitioner", "Patient"):
        return None
    return _store().read(*reference.split("/", 1)).resource


def _known_user(launch: dict[str, Any] | None, needs_patient: bool) -> AuthUser | None:
    """The user a launch or the sandbox sign-in already names (None: they must choose)."""
    if launch is not None:
        return _approving_user(launch, needs_patient, "")
    user = session.get(_USER_KEY) or ""
    if not _exists(user, "Practitioner", "Patient"):
        return None
    if needs_patient and user.startswith("Practitioner/"):
        return None  # a clinician's standalone launch still picks the patient
    return _approving_user(None, needs_patient, user)


#: How the consent page names FHIR resource types, for people rather than developers.
_TYPE_WORDS = {
    "Task": "homework assignments", "CarePlan": "homework plans", "Questionnaire": "activities",
    "QuestionnaireResponse": "answers", "Observation": "scores", "Patient": "patient details",
    "Practitioner": "clinician details", "Flag": "risk flags", "Communication": "messages",
    "CommunicationRequest": "reminders", "*": "all records",
}
_PERMISSIONS = {"c": "add", "r": "read", "u": "change", "d": "delete", "s": "search"}
_FIXED_SCOPES = {
    "launch": "Open with the chart that is open in your EHR",
    "launch/patient": "Ask which patient to open",
    "openid": "Know who you are", "fhirUser": "Know who you are",
    "offline_access": "Stay connected after you close it", "online_access": "Stay connected while you use it",
}


def describe_scopes(scope: str) -> list[tuple[str, str]]:
    """Return (plain words, scope) for each requested scope, duplicates of wording once."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in scope.split():
        words = _FIXED_SCOPES.get(item) or _resource_scope_words(item) or item
        if words not in seen:
            seen.add(words)
            out.append((words, item))
    return out


def _resource_scope_words(item: str) -> str | None:
    context, _, rest = item.partition("/")
    kind, _, perms = rest.partition(".")
    if context not in ("patient", "user", "system") or not kind or not perms:
        return None
    what = _TYPE_WORDS.get(kind, kind)
    if perms in ("read", "write", "*"):
        verbs = {"read": "read", "write": "add and change", "*": "read, add and change"}[perms]
    else:
        verbs = ", ".join(_PERMISSIONS[p] for p in perms if p in _PERMISSIONS)
    whose = {"patient": "of this patient", "user": "you can see", "system": "of everyone"}[context]
    return f"{what[:1].upper()}{what[1:]} {whose}: {verbs}"


def _approving_user(launch: dict[str, Any] | None, needs_patient: bool, user: str) -> AuthUser:
    if launch is not None:
        return AuthUser(fhir_user=launch["fhirUser"], patient=launch["patient"],
                        encounter=launch.get("encounter"),
                        fhir_context=tuple(launch.get("fhirContext") or ()),
                        need_patient_banner=bool(launch.get("need_patient_banner")),
                        smart_style_url=launch.get("smart_style_url"), ehr_launch=True)
    if not _exists(user, "Practitioner", "Patient"):
        raise InvalidInput("Pick who you are signing in as")
    patient = None
    if user.startswith("Patient/"):
        patient = user.split("/", 1)[1]
    elif needs_patient:
        patient = request.form.get("patient", "")
        if not _exists(f"Patient/{patient}", "Patient"):
            raise InvalidInput("Pick the patient to open")
    return AuthUser(fhir_user=user, patient=patient, need_patient_banner=True,
                    smart_style_url=f"{app_base()}/sandbox/smart-style.json")


@bp.post("/sandbox/token")
@csrf_exempt
def token() -> Response:
    """Issue tokens (authorization_code, refresh_token, client_credentials)."""
    return oauth_response(sandbox().server)


# ---------------------------------------------------------------------- demo inbox


@bp.get("/sandbox/inbox.json")
def inbox_json() -> Response:
    """Return every message the demo sent: ``[{to, channel, subject, body, link, sent}]``."""
    keep = ("to", "channel", "subject", "body", "link", "sent")
    messages = read_inbox(app_state().services.settings)
    return jsonify([{k: m.get(k) for k in keep} for m in messages])


@bp.get("/sandbox/inbox")
def inbox() -> Any:
    """Show the demo inbox: one phone per recipient with its messages and secure links."""
    phones: dict[str, list[dict[str, Any]]] = {}
    for message in read_inbox(app_state().services.settings):
        phones.setdefault(message.get("to") or "(no address)", []).append(message)
    return render_template("sandbox/inbox.html", phones=phones)

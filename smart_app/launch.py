"""SMART launch blueprint: ``/launch``, ``/callback``, the landing page ``/app``, the app's JWKS.

Views are thin: :class:`hw_fhir.smart.launcher.Launcher` does the work. Each
launch has its own id, carried in the app's URLs (``/app?launch=<id>``) and
bound to the browser session, so launches in several tabs do not overwrite each
other. Other blueprints use :func:`current_launch`, :func:`launch_url` and
:func:`ehr_client`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from hw_fhir.errors import HwFhirError, NoCurrentLaunch
from hw_fhir.smart.client import EhrClient
from hw_fhir.smart.keys import load_or_create_key, public_jwks
from hw_fhir.smart.launcher import Launcher, relative_reference
from hw_fhir.smart.mirror import read_local
from hw_fhir.smart.registry import EhrRegistry
from hw_fhir.smart.sessions import Launch, LaunchContext, LaunchStore

from .fhir_api import fhir_base
from .security import rotate_session, session_id
from .state import app_state

__all__ = ["bp", "init_app", "launcher", "current_launch", "launch_url", "ehr_client",
           "human_name", "LAUNCH_ARG", "AFTER_LAUNCH_KEY", "after_launch"]

bp = Blueprint("launch", __name__)

#: The query parameter naming the launch in the app's URLs.
LAUNCH_ARG = "launch"


def launcher() -> Launcher:
    """Return the current app's Launcher."""
    found = app_state().launcher
    assert found is not None, "init_app builds it"
    return found


def _base() -> str:
    settings = app_state().services.settings
    return (settings.base_url or request.url_root).rstrip("/")


def _error(status: int, title: str, message: str, *, hint: str | None = None) -> tuple[str, int]:
    return render_template("launch/error.html", title=title, message=message, hint=hint), status


# --------------------------------------------------------------------- views


@bp.get("/")
def index() -> Any:
    """Send newcomers to the sandbox EHR when it runs; otherwise explain how hw-fhir is opened."""
    if app_state().sandbox is not None:
        return redirect(url_for("sandbox.ehr"))
    return render_template("launch/index.html", launch_uri=f"{_base()}/launch",
                           redirect_uri=f"{_base()}/callback")


@bp.get("/launch")
def launch() -> Any:
    """Start an EHR launch (``iss`` + ``launch``) or a standalone launch (``iss`` only)."""
    iss = request.args.get("iss", "").strip()
    if not iss:
        return _error(400, "hw-fhir needs to be opened from your EHR",
                      "This address is the SMART launch URL. Open hw-fhir from your EHR or patient "
                      "portal; the launch must name the EHR's FHIR server (iss).")
    try:
        _, url = launcher().start(
            iss=iss, launch=request.args.get("launch") or None, session_id=session_id(),
            redirect_uri=f"{_base()}/callback", local_fhir_base=fhir_base())
    except HwFhirError as exc:
        return _error(exc.status, "The launch could not start", exc.message)
    return redirect(url)


@bp.get("/callback")
def callback() -> Any:
    """Finish a launch: check state, exchange the code, verify the id_token, open the app."""
    args = request.args
    sid = getattr(session, "sid", "")
    try:
        active = launcher().complete(
            state=args.get("state", ""), code=args.get("code"), error=args.get("error"),
            error_description=args.get("error_description"), session_id=sid,
            local_fhir_base=fhir_base())
    except HwFhirError as exc:
        hint = None
        if getattr(session, "new", False):
            hint = ("This browser did not send hw-fhir's session cookie back. If hw-fhir runs inside "
                    "an EHR frame, the browser may be blocking its cookies.")
        return _error(exc.status, "The launch did not complete", exc.message, hint=hint)
    # A privilege change: a new session id (the launches follow it). Launches already open
    # in other tabs keep their forms' CSRF token.
    others = [i for i in launcher().launches.list_for_session(sid) if i != active.id]
    rotate_session(keep_csrf=bool(others))
    return after_launch(active.id) or redirect(url_for("launch.home", launch=active.id))


@bp.get("/app")
def home() -> Any:
    """Show the landing page of a launch: who is signed in and which patient is open."""
    active = current_launch()
    if active is None:
        return _error(401, "No open launch",
                      "Open hw-fhir from your EHR or patient portal. A launch link only works in the "
                      "browser session that started it.")
    ctx = active.context
    if _patient_portal_launch(ctx):
        return redirect(url_for("patient.from_launch", launch=active.id))
    store = app_state().services.store
    return render_template("app/home.html", launch=active, context=ctx,
                           patient=read_local(store, "Patient", ctx.local_patient),
                           practitioner=read_local(store, "Practitioner", ctx.local_practitioner))


def _patient_portal_launch(ctx: LaunchContext) -> bool:
    """Whether a launch opened a patient's own record (no clinician signed in).

    A standalone launch by a patient (or by nobody in particular), or an EHR launch from
    a patient portal: fhirUser is the launch patient.
    """
    if not ctx.local_patient:
        return False
    if not ctx.standalone:
        user = relative_reference(ctx.fhir_user, ctx.iss)
        return bool(ctx.patient) and user == f"Patient/{ctx.patient}"
    return ctx.user_type == "Patient" or (ctx.user_type is None and not ctx.local_practitioner)


@bp.get("/.well-known/jwks.json")
def app_jwks() -> Response:
    """Return the app's public key (for EHRs registering hw-fhir with private_key_jwt)."""
    response = jsonify(public_jwks([_client_key(current_app)]))
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


# ------------------------------------------------------------------- helpers


#: Session key of a link to open once a launch completes (an alert email's ``/alerts/<id>``).
AFTER_LAUNCH_KEY = "after_launch"


def after_launch(launch_id: str) -> Any:
    """The redirect to the alert link remembered before the launch (once), or None."""
    target = session.pop(AFTER_LAUNCH_KEY, None)
    if not isinstance(target, str) or not target.startswith("/alerts/"):
        return None
    return redirect(f"{target}?{LAUNCH_ARG}={launch_id}")


def current_launch() -> Launch | None:
    """Return the launch named in the request (``?launch=``) if it belongs to this browser session."""
    if "smart_launch" in g:
        return g.smart_launch  # type: ignore[no-any-return]
    launch_id = (request.args.get(LAUNCH_ARG) or (request.view_args or {}).get(LAUNCH_ARG)
                 or request.form.get(LAUNCH_ARG) or "")
    found = launcher().get(launch_id, getattr(session, "sid", None)) if launch_id else None
    g.smart_launch = found
    return found


def launch_url(endpoint: str, **values: Any) -> str:
    """``url_for`` that keeps the current launch id in the URL."""
    active = current_launch()
    if active is not None:
        values.setdefault(LAUNCH_ARG, active.id)
    return url_for(endpoint, **values)


def ehr_client(active: Launch | None = None) -> EhrClient:
    """Return a FHIR client for the EHR of a launch (default: the current one)."""
    active = active or current_launch()
    if active is None:
        raise NoCurrentLaunch("there is no current launch")
    return launcher().ehr_client(active)


def human_name(resource: dict[str, Any] | None) -> str:
    """Return a person's display name from a Patient/Practitioner resource."""
    if not resource:
        return ""
    names = resource.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    if name.get("text"):
        return str(name["text"])
    parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
    return " ".join(p for p in parts if p) or str(resource.get("id", ""))


def _client_key(app: Flask) -> Any:
    state = app_state(app)
    if state.client_key is None:
        path = Path(state.services.settings.instance_path) / "smart_client_key.json"
        state.client_key = load_or_create_key(path, "RS384")
    return state.client_key


def init_app(app: Flask) -> None:
    """Register the launch blueprint and build the Launcher from the settings."""
    state = app_state(app)
    services = state.services
    settings = services.settings
    state.launcher = Launcher(
        store=services.store, registry=EhrRegistry.from_settings(settings),
        launches=LaunchStore(services.store, settings.secret_key),
        client_key=lambda: _client_key(app))
    app.add_template_filter(human_name, "human_name")
    app.add_template_global(launch_url, "launch_url")
    app.register_blueprint(bp)

"""Browser security of the app: server-side sessions, CSRF protection, framing headers.

* Sessions live in the database (:class:`hw_fhir.smart.sessions.WebSessionStore`);
  the cookie holds only a random id. With ``secure_cookies`` (the default, required in
  production) it is ``__Host-hw_fhir_session``, ``Secure; SameSite=None; Partitioned;
  Path=/`` and no Domain, so it works inside an EHR's iframe and no other host can plant
  it; ``HW_FHIR_SECURE_COOKIES=0`` (plain-http local development only) makes it
  ``hw_fhir_session``, ``SameSite=Lax`` without ``Secure``.
* :func:`rotate_session` gives the session a new id (and a new CSRF token) on every
  privilege change: patient sign-in and sign-out, SMART launch completion.
* Every POST/PUT/PATCH/DELETE outside /fhir must carry the session's CSRF token
  (form field ``csrf_token`` or header ``X-CSRF-Token``). Templates call
  ``{{ csrf_token() }}``; views that authenticate otherwise use :func:`csrf_exempt`;
  other code can call :func:`check_csrf`.
* Responses carry a strict ``Content-Security-Policy``: ``script-src 'self'`` (plus a
  per-request nonce when a template asked for one with ``{{ csp_nonce() }}``),
  ``object-src 'none'``, ``base-uri 'none'`` and ``frame-ancestors
  <settings.frame_ancestors>``; never ``X-Frame-Options``. Pages keep their scripts in
  static files; inline event handlers do not run.
"""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import timedelta
from typing import Any, Callable, TypeVar

from flask import Flask, Request, Response, current_app, g, request, session
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from hw_fhir.errors import Forbidden, SessionInterfaceMissing
from hw_fhir.i18n import N_
from hw_fhir.smart.sessions import WebSessionStore, new_session_id

from .state import services

__all__ = [
    "init_app",
    "csrf_token",
    "check_csrf",
    "csrf_exempt",
    "session_id",
    "ServerSession",
    "DatabaseSessionInterface",
    "COOKIE_NAME",
    "SECURE_COOKIE_NAME",
    "CSRF_FIELD",
    "CSRF_EXPIRED",
    "cookie_name",
    "rotate_session",
    "csp_nonce",
    "content_security_policy",
]

COOKIE_NAME = "hw_fhir_session"
#: The cookie's name with Secure cookies: ``__Host-`` makes browsers refuse it unless it is
#: Secure, host-only (no Domain) and Path=/, so a sibling subdomain cannot plant a session id.
SECURE_COOKIE_NAME = "__Host-" + COOKIE_NAME
CSRF_FIELD = "csrf_token"
_CSRF_KEY = "_csrf"
#: What a refused form says (a patient reads it in their language: marked for the catalog).
CSRF_EXPIRED = N_("This form has expired or was not sent from this site. "
                  "Go back, reload the page and try again.")
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
#: Blueprints whose requests authenticate without cookies (bearer tokens, client auth).
_EXEMPT_BLUEPRINTS = {"fhir"}

F = TypeVar("F", bound=Callable[..., Any])


class ServerSession(CallbackDict, SessionMixin):  # type: ignore[misc]
    """Session data kept in the database under a random id."""

    def __init__(self, initial: dict[str, Any] | None = None, *, sid: str | None,
                 new: bool) -> None:
        def on_update(_: Any) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self._sid = sid
        self.new = new
        self.modified = False
        self.rotated = False

    @property
    def sid(self) -> str:
        """The session's id; a new session draws its random id only when something needs it
        (a save, a rotation): most requests (every /fhir call, public pages) never do."""
        if self._sid is None:
            self._sid = new_session_id()
        return self._sid

    @sid.setter
    def sid(self, value: str) -> None:
        self._sid = value


class DatabaseSessionInterface(SessionInterface):
    """Flask sessions stored server-side in ``smart_web_session``."""

    def __init__(self, store: WebSessionStore) -> None:
        self.store = store

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        """Load the session named by the cookie, or start a new (unsaved) one."""
        sid = request.cookies.get(self.get_cookie_name(app))
        if sid and len(sid) <= 128:
            data = self.store.load(sid)
            if data is not None:
                return ServerSession(data, sid=sid, new=False)
        return ServerSession(sid=None, new=True)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Write a changed session and (re)set its cookie; forget an emptied one."""
        assert isinstance(session, ServerSession)
        name = self.get_cookie_name(app)
        secure = bool(app.config.get("SESSION_COOKIE_SECURE"))
        samesite = app.config.get("SESSION_COOKIE_SAMESITE")
        if not session:
            if session.modified and (session.rotated or not session.new):
                self.store.delete(session.sid)
                response.delete_cookie(name, path=self.get_cookie_path(app), secure=secure,
                                       samesite=samesite, httponly=True)
            return
        if not session.modified:
            return
        lifetime = app.permanent_session_lifetime
        self.store.save(session.sid, dict(session), lifetime=int(lifetime.total_seconds()))
        response.vary.add("Cookie")
        response.set_cookie(
            name, session.sid, max_age=lifetime, path=self.get_cookie_path(app),
            domain=self.get_cookie_domain(app), secure=secure, httponly=True, samesite=samesite,
            partitioned=bool(app.config.get("SESSION_COOKIE_PARTITIONED")))


def cookie_name(secure: bool) -> str:
    """Return the session cookie's name for the ``secure_cookies`` setting."""
    return SECURE_COOKIE_NAME if secure else COOKIE_NAME


def rotate_session(*, keep_csrf: bool = False) -> str:
    """Give this browser session a new id, keeping its data; return the new id.

    Call on every privilege change. The old id stops working at once (its row is
    deleted; its launches follow the new id); the response sets the new cookie. The
    CSRF token is renewed too unless ``keep_csrf`` (other tabs of the same session hold
    forms carrying it).
    """
    if not isinstance(session, ServerSession):
        raise SessionInterfaceMissing("the database session interface is not installed")
    old, new = session.sid, new_session_id()
    interface = current_app.session_interface
    assert isinstance(interface, DatabaseSessionInterface)
    interface.store.rotate(old, new)
    session.sid = new
    session.new = True
    session.rotated = True
    if not keep_csrf:
        session.pop(_CSRF_KEY, None)
    session.modified = True
    return new


def session_id() -> str:
    """Return the current browser session's id, making sure the session gets saved."""
    if not hasattr(session, "sid"):
        raise SessionInterfaceMissing("the database session interface is not installed")
    session.setdefault("since", int(time.time()))
    session.modified = True
    return session.sid  # type: ignore[attr-defined,no-any-return]


# ---------------------------------------------------------------------- CSRF


def csrf_token() -> str:
    """Return the session's CSRF token (created on first use); put it in every form."""
    token = session.get(_CSRF_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        session[_CSRF_KEY] = token
    return str(token)


def check_csrf() -> None:
    """Raise Forbidden unless the request carries the session's CSRF token."""
    sent = request.form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token") or ""
    expected = session.get(_CSRF_KEY) or ""
    if not (sent and expected and hmac.compare_digest(str(sent), str(expected))):
        raise Forbidden(CSRF_EXPIRED)


def csrf_exempt(view: F) -> F:
    """Mark a view as authenticating without cookies (no CSRF token needed)."""
    view.csrf_exempt = True  # type: ignore[attr-defined]
    return view


def _csrf_protect() -> None:
    if request.method not in _UNSAFE or request.blueprint in _EXEMPT_BLUEPRINTS:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or getattr(view, "csrf_exempt", False):
        return
    check_csrf()


# ------------------------------------------------------------------- headers


def csp_nonce() -> str:
    """Return this request's script nonce (made on first use; the CSP then allows it)."""
    nonce = g.get("csp_nonce")
    if nonce is None:
        nonce = g.csp_nonce = secrets.token_urlsafe(18)
    return str(nonce)


def content_security_policy(frame_ancestors: str, nonce: str | None = None) -> str:
    """Return the Content-Security-Policy header value."""
    scripts = "'self'" + (f" 'nonce-{nonce}'" if nonce else "")
    return (f"script-src {scripts}; object-src 'none'; base-uri 'none'; "
            f"frame-ancestors {frame_ancestors or chr(39) + 'self' + chr(39)}")


#: The Content-Security-Policy without a nonce, by ``frame_ancestors`` (built once).
_CSP_NO_NONCE: dict[str, str] = {}


def _security_headers(response: Response) -> Response:
    """Add the CSP, nosniff and Referrer-Policy headers a view did not set; drop X-Frame-Options.

    One pass over the response's headers (each ``setdefault``/``pop`` would scan them again).
    """
    headers = response.headers
    present = {key.lower() for key in headers.keys()}
    if "x-frame-options" in present:
        headers.pop("X-Frame-Options", None)
    if "content-security-policy" not in present:
        frame_ancestors = services().settings.frame_ancestors
        nonce = g.get("csp_nonce")
        if nonce:
            csp = content_security_policy(frame_ancestors, nonce)
        else:
            csp = _CSP_NO_NONCE.get(frame_ancestors) or _CSP_NO_NONCE.setdefault(
                frame_ancestors, content_security_policy(frame_ancestors))
        headers.add("Content-Security-Policy", csp)
    if "x-content-type-options" not in present:
        headers.add("X-Content-Type-Options", "nosniff")
    if "referrer-policy" not in present:
        headers.add("Referrer-Policy", "same-origin")
    return response


def init_app(app: Flask) -> None:
    """Install the session interface, CSRF protection and security headers."""
    svc = services(app)
    settings = svc.settings
    app.session_interface = DatabaseSessionInterface(WebSessionStore(svc.store))
    app.config.update(
        SESSION_COOKIE_NAME=cookie_name(settings.secure_cookies),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_SAMESITE="None" if settings.secure_cookies else "Lax",
        SESSION_COOKIE_PARTITIONED=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
    )
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.before_request(_csrf_protect)
    app.after_request(_security_headers)

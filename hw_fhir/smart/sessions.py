"""Server-side browser sessions and launch records (hw-fhir as a SMART client).

The browser's cookie carries only a random session id; the data lives in
``smart_web_session`` under the id's SHA-256. Each launch is its own row in
``smart_launch`` bound to one browser session, so launches in several tabs never
overwrite each other. A launch's state (PKCE verifier, tokens, context) is
sealed with a key derived from the app's secret key before it is stored.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, insert, select, update

from ..errors import InvalidInput
from .authstore import hash_secret
from .tables import smart_launch, smart_web_session

__all__ = [
    "Sealer",
    "WebSessionStore",
    "LaunchStore",
    "PendingLaunch",
    "LaunchTokens",
    "LaunchContext",
    "Launch",
    "new_session_id",
]


def _now() -> int:
    return int(time.time())


def new_session_id() -> str:
    """Return a fresh random session id (256 bits)."""
    return secrets.token_urlsafe(32)


class Sealer:
    """Encrypt and authenticate small JSON documents with a key derived from the secret key."""

    def __init__(self, secret_key: str, purpose: str = "smart-launch") -> None:
        digest = hashlib.sha256(f"hw-fhir:{purpose}:{secret_key}".encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, data: dict[str, Any]) -> str:
        """Return the encrypted form of a JSON-able dict."""
        return self._fernet.encrypt(orjson.dumps(data)).decode()

    def unseal(self, token: str) -> dict[str, Any] | None:
        """Return the dict, or None when it was sealed with another key or tampered with."""
        try:
            return orjson.loads(self._fernet.decrypt(token.encode()))
        except (InvalidToken, ValueError):
            return None


# ------------------------------------------------------------------ sessions


class WebSessionStore:
    """Browser session data by session id."""

    def __init__(self, store: Any, *, purge_interval: int = 600) -> None:
        self.store = store
        self.purge_interval = purge_interval
        self._next_purge = 0.0

    def load(self, sid: str) -> dict[str, Any] | None:
        """Return a session's data (None when unknown or expired)."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(smart_web_session.c.data).where(
                smart_web_session.c.sid_hash == hash_secret(sid),
                smart_web_session.c.expires_at > _now())).first()
        return orjson.loads(row.data) if row else None

    def save(self, sid: str, data: dict[str, Any], *, lifetime: int) -> None:
        """Create or replace a session's data (and now and then purge expired ones)."""
        if time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + self.purge_interval
            self.purge()
        key = hash_secret(sid)
        values = {"data": orjson.dumps(data).decode(), "expires_at": _now() + lifetime}
        with self.store.begin() as conn:
            done = conn.execute(update(smart_web_session)
                                .where(smart_web_session.c.sid_hash == key).values(**values))
            if done.rowcount == 0:
                conn.execute(insert(smart_web_session).values(sid_hash=key, **values))

    def rotate(self, old_sid: str, new_sid: str) -> None:
        """Move a session to a new id: forget the old row, rebind its launches to the new id.

        Called on every privilege change (sign-in, launch completion, sign-out) so that an
        id somebody planted or saw before the change opens nothing afterwards.
        """
        old, new = hash_secret(old_sid), hash_secret(new_sid)
        with self.store.begin() as conn:
            conn.execute(delete(smart_web_session).where(smart_web_session.c.sid_hash == old))
            conn.execute(update(smart_launch).where(smart_launch.c.session_hash == old)
                         .values(session_hash=new))

    def delete(self, sid: str) -> None:
        """Forget a session."""
        with self.store.begin() as conn:
            conn.execute(delete(smart_web_session).where(smart_web_session.c.sid_hash == hash_secret(sid)))

    def purge(self) -> None:
        """Delete expired sessions and launches."""
        now = _now()
        with self.store.begin() as conn:
            conn.execute(delete(smart_web_session).where(smart_web_session.c.expires_at < now))
            conn.execute(delete(smart_launch).where(smart_launch.c.expires_at < now))


# ------------------------------------------------------------------ launches


def _from_dict(cls: Any, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class PendingLaunch:
    """A launch waiting for its authorization code: what the callback needs to finish it."""

    iss: str
    client_id: str
    state: str
    code_verifier: str
    redirect_uri: str
    scope: str
    nonce: str = ""
    launch: str | None = None
    token_endpoint: str = ""
    authorization_endpoint: str = ""
    jwks_uri: str | None = None
    issuer: str | None = None


@dataclass(frozen=True)
class LaunchTokens:
    """The tokens of an active launch."""

    access_token: str
    token_endpoint: str
    expires_at: int | None = None
    refresh_token: str | None = None
    token_type: str = "Bearer"

    def expires_within(self, seconds: int, now: int | None = None) -> bool:
        """Whether the access token expires within ``seconds`` (never, when no expiry is known)."""
        return self.expires_at is not None and self.expires_at - (now or _now()) <= seconds


@dataclass(frozen=True)
class LaunchContext:
    """What the EHR granted: scope, patient, user, display hints, and the local mirrors."""

    iss: str
    client_id: str
    scope: str
    patient: str | None = None
    encounter: str | None = None
    fhir_context: list[dict[str, Any]] = field(default_factory=list, hash=False)
    need_patient_banner: bool | None = None
    smart_style_url: str | None = None
    fhir_user: str | None = None
    standalone: bool = False
    local_patient: str | None = None
    local_practitioner: str | None = None
    id_token_claims: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def show_patient_banner(self) -> bool:
        """Whether the app should draw its own patient banner (the EHR did not ask it not to)."""
        return self.need_patient_banner is not False

    @property
    def launch_encounter(self) -> str | None:
        """The id of the launch's encounter: ``encounter``, else an Encounter in ``fhirContext``."""
        if self.encounter:
            return self.encounter
        for item in self.fhir_context:
            ref = str(item.get("reference") or "") if isinstance(item, dict) else ""
            parts = ref.rstrip("/").split("/")
            if len(parts) >= 2 and parts[-2] == "Encounter" and parts[-1]:
                return parts[-1]
        return None

    def encounter_reference(self, local_fhir_base: str | None = None) -> str | None:
        """The launch encounter as a reference for homework (None without one).

        ``Encounter/<id>`` when the EHR is this very server (``local_fhir_base``, the
        sandbox), else the absolute URL of the Encounter on the EHR, which stays
        resolvable here and is sent back to that EHR as its own ``Encounter/<id>``.
        """
        encounter = self.launch_encounter
        if not encounter:
            return None
        if local_fhir_base and self.iss.rstrip("/") == local_fhir_base.strip().rstrip("/"):
            return f"Encounter/{encounter}"
        return f"{self.iss.rstrip('/')}/Encounter/{encounter}"

    @property
    def user_type(self) -> str | None:
        """``Practitioner``, ``Patient``, ``RelatedPerson``... from fhirUser."""
        if not self.fhir_user:
            return None
        parts = self.fhir_user.rstrip("/").split("/")
        return parts[-2] if len(parts) >= 2 else None


@dataclass(frozen=True)
class Launch:
    """An active launch: its id, context and tokens."""

    id: str
    context: LaunchContext
    tokens: LaunchTokens


class LaunchStore:
    """Launch rows, bound to browser sessions, with sealed state."""

    def __init__(self, store: Any, secret_key: str, *, pending_lifetime: int = 600,
                 active_lifetime: int = 12 * 3600) -> None:
        self.store = store
        self.sealer = Sealer(secret_key)
        self.pending_lifetime = pending_lifetime
        self.active_lifetime = active_lifetime

    def create_pending(self, session_id: str, pending: PendingLaunch) -> str:
        """Store a pending launch bound to a browser session; return the launch id."""
        launch_id = secrets.token_urlsafe(16)
        now = _now()
        with self.store.begin() as conn:
            conn.execute(insert(smart_launch).values(
                id=launch_id, session_hash=hash_secret(session_id),
                state_hash=hash_secret(pending.state), status="pending", iss=pending.iss,
                data=self.sealer.seal({"pending": asdict(pending)}),
                created_at=now, expires_at=now + self.pending_lifetime))
        return launch_id

    def take_pending(self, state: str, session_id: str) -> tuple[str, PendingLaunch]:
        """Claim the pending launch of a callback ``state``; InvalidInput when it does not fit."""
        if not state:
            raise InvalidInput("The authorization server sent no state; the launch cannot continue")
        t = smart_launch
        with self.store.begin() as conn:
            row = conn.execute(select(t).where(t.c.state_hash == hash_secret(state))).first()
            if row is None:
                raise InvalidInput("The state of this callback is not known here "
                                       "(state mismatch); start the launch again")
            if row.session_hash != hash_secret(session_id):
                raise InvalidInput("This callback belongs to a launch started in another browser "
                                       "session (state mismatch); start the launch again")
            if row.status != "pending":
                raise InvalidInput("This launch has already been completed; start a new launch")
            if row.expires_at <= _now():
                raise InvalidInput("This launch took too long and has expired; start it again")
            done = conn.execute(update(t).where(t.c.id == row.id, t.c.status == "pending")
                                .values(status="exchanging"))
            if done.rowcount != 1:
                raise InvalidInput("This launch has already been completed; start a new launch")
        data = self.sealer.unseal(row.data) or {}
        if "pending" not in data:
            raise InvalidInput("The launch state cannot be read (the secret key changed?)")
        return row.id, _from_dict(PendingLaunch, data["pending"])

    def activate(self, launch_id: str, context: LaunchContext, tokens: LaunchTokens) -> Launch:
        """Turn a claimed launch into an active one."""
        self._write(launch_id, context, tokens, status="active")
        return Launch(launch_id, context, tokens)

    def fail(self, launch_id: str) -> None:
        """Mark a claimed launch as failed."""
        with self.store.begin() as conn:
            conn.execute(update(smart_launch).where(smart_launch.c.id == launch_id)
                         .values(status="failed", data=self.sealer.seal({})))

    def update_tokens(self, launch: Launch, tokens: LaunchTokens) -> Launch:
        """Replace an active launch's tokens (after a refresh)."""
        self._write(launch.id, launch.context, tokens, status="active")
        return Launch(launch.id, launch.context, tokens)

    def _write(self, launch_id: str, context: LaunchContext, tokens: LaunchTokens, *, status: str) -> None:
        data = {"context": asdict(context), "tokens": asdict(tokens)}
        with self.store.begin() as conn:
            conn.execute(update(smart_launch).where(smart_launch.c.id == launch_id).values(
                status=status, data=self.sealer.seal(data), expires_at=_now() + self.active_lifetime))

    def get(self, launch_id: str, session_id: str | None) -> Launch | None:
        """Return an active launch of this browser session (None otherwise)."""
        if not launch_id or not session_id:
            return None
        return self._load(launch_id, hash_secret(session_id))

    def reload(self, launch: Launch) -> Launch | None:
        """Return the stored, current version of a launch (tokens may have been refreshed)."""
        return self._load(launch.id, None)

    def _load(self, launch_id: str, session_hash: str | None) -> Launch | None:
        t = smart_launch
        where = [t.c.id == launch_id, t.c.status == "active", t.c.expires_at > _now()]
        if session_hash is not None:
            where.append(t.c.session_hash == session_hash)
        with self.store.engine.connect() as conn:
            row = conn.execute(select(t).where(*where)).first()
        if row is None:
            return None
        data = self.sealer.unseal(row.data) or {}
        if "context" not in data or "tokens" not in data:
            return None
        return Launch(row.id, _from_dict(LaunchContext, data["context"]),
                      _from_dict(LaunchTokens, data["tokens"]))

    def list_for_session(self, session_id: str) -> list[str]:
        """Return the ids of the active launches of a browser session, newest first."""
        t = smart_launch
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(t.c.id).where(
                t.c.session_hash == hash_secret(session_id), t.c.status == "active",
                t.c.expires_at > _now()).order_by(t.c.created_at.desc())).all()
        return [r.id for r in rows]

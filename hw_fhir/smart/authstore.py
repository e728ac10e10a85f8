"""Records of the authorization server: launch ids, codes, tokens, assertion ids.

Codes and tokens are stored as SHA-256 hashes only; the /fhir facade
introspects a bearer token by hashing it and looking it up here, so any
process on the same database accepts the tokens the sandbox issued.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..store.engine import sqlite_first
from .tables import smart_auth_code, smart_auth_launch, smart_jti, smart_token

__all__ = ["AuthStore", "TokenRecord", "CodeRecord", "hash_secret"]


def hash_secret(value: str) -> str:
    """Return the hex SHA-256 of a token, code or session id."""
    return hashlib.sha256(value.encode()).hexdigest()


def _now() -> int:
    return int(time.time())


#: The token lookup of every /fhir request, built once (SQLAlchemy only binds the hash);
#: on SQLite the same as SQL text for the sqlite3 connection, its rows named like the table's.
_INTROSPECT = select(smart_token).where(smart_token.c.access_hash == bindparam("access_hash"))
_TokenRow = namedtuple("_TokenRow", [c.name for c in smart_token.c])  # type: ignore[misc]
_INTROSPECT_SQLITE = (f"SELECT {', '.join(_TokenRow._fields)} FROM smart_token "
                      "WHERE access_hash = ?")


@dataclass(frozen=True)
class CodeRecord:
    """An authorization code, as issued: client, redirect URI, scope, PKCE challenge, user context."""

    client_id: str
    data: dict[str, Any] = field(hash=False)

    def get(self, key: str, default: Any = None) -> Any:
        """Return one field of the code's data."""
        return self.data.get(key, default)


@dataclass(frozen=True)
class TokenRecord:
    """An issued token: who it was issued to, its scope, its launch context and lifetimes."""

    access_hash: str
    client_id: str
    scope: str
    context: dict[str, Any] = field(hash=False)
    issued_at: int = 0
    expires_at: int = 0
    refresh_expires_at: int | None = None
    revoked: bool = False
    #: The token family: hash of the authorization code every token of one grant descends from.
    family: str | None = None
    refresh_hash: str | None = None

    def active(self, now: int | None = None) -> bool:
        """Whether the access token is usable now."""
        return not self.revoked and self.expires_at > (now or _now())

    def refresh_active(self, now: int | None = None) -> bool:
        """Whether the refresh token is usable now (not revoked, not rotated, not expired)."""
        return not self.revoked and bool(self.refresh_expires_at) and \
            int(self.refresh_expires_at or 0) > (now or _now())


def _token(row: Any) -> TokenRecord:
    return TokenRecord(row.access_hash, row.client_id, row.scope, orjson.loads(row.data),
                       row.issued_at, row.expires_at, row.refresh_expires_at, bool(row.revoked),
                       row.code_hash, row.refresh_hash)


class AuthStore:
    """Launch ids, codes, tokens and assertion ids in the store's database."""

    def __init__(self, store: Any, *, purge_interval: int = 600) -> None:
        self.store = store
        self.engine = store.engine
        self.purge_interval = purge_interval
        self._next_purge = 0.0

    # --------------------------------------------------------------- launch

    def create_launch(self, context: dict[str, Any], *, lifetime: int = 3600) -> str:
        """Store an EHR launch context; return its opaque ``launch`` id."""
        launch_id = secrets.token_urlsafe(24)
        self.maybe_purge()
        with self.store.begin() as conn:
            conn.execute(insert(smart_auth_launch).values(
                id=launch_id, data=orjson.dumps(context).decode(), expires_at=_now() + lifetime))
        return launch_id

    def get_launch(self, launch_id: str) -> dict[str, Any] | None:
        """Return the context of a launch id (None when unknown or expired)."""
        if launch_id.startswith("consent-"):  # a remembered consent is not a launch
            return None
        return self._launch_row(launch_id)

    def _launch_row(self, launch_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(smart_auth_launch).where(
                smart_auth_launch.c.id == launch_id, smart_auth_launch.c.expires_at > _now())).first()
        return orjson.loads(row.data) if row else None

    # -------------------------------------------------------------- consent

    @staticmethod
    def _consent_id(user: str, client_id: str, scope: str) -> str:
        scopes = " ".join(sorted(set(scope.split())))
        return "consent-" + hash_secret(f"{user}\n{client_id}\n{scopes}")[:56]

    def remember_consent(self, user: str, client_id: str, scope: str, *,
                         lifetime: int = 90 * 86400) -> None:
        """Remember that ``user`` allowed ``client_id`` these scopes (asked once, not per launch).

        Kept beside the launch ids (same table, ``consent-`` ids, same expiry purge).
        """
        consent_id = self._consent_id(user, client_id, scope)
        with self.store.begin() as conn:
            conn.execute(delete(smart_auth_launch).where(smart_auth_launch.c.id == consent_id))
            conn.execute(insert(smart_auth_launch).values(
                id=consent_id, data=orjson.dumps({"user": user, "client_id": client_id}).decode(),
                expires_at=_now() + lifetime))

    def has_consent(self, user: str, client_id: str, scope: str) -> bool:
        """Whether ``user`` already allowed ``client_id`` exactly these scopes (in any order)."""
        return self._launch_row(self._consent_id(user, client_id, scope)) is not None

    # ----------------------------------------------------------------- code

    def save_code(self, code: str, client_id: str, data: dict[str, Any], *, lifetime: int = 120) -> None:
        """Store an authorization code (hashed) for one client."""
        self.maybe_purge()
        with self.store.begin() as conn:
            conn.execute(insert(smart_auth_code).values(
                code_hash=hash_secret(code), client_id=client_id,
                data=orjson.dumps(data).decode(), expires_at=_now() + lifetime))

    def take_code(self, code: str, client_id: str) -> CodeRecord | None:
        """Use a code once; a second use returns None and revokes the tokens issued from it."""
        code_hash = hash_secret(code)
        now = _now()
        table = smart_auth_code
        with self.store.begin() as conn:
            done = conn.execute(update(table).where(
                table.c.code_hash == code_hash, table.c.client_id == client_id,
                table.c.used_at.is_(None), table.c.expires_at > now).values(used_at=now))
            if done.rowcount == 1:
                row = conn.execute(select(table.c.data).where(table.c.code_hash == code_hash)).first()
                return CodeRecord(client_id, orjson.loads(row.data))
            reused = conn.execute(select(table.c.used_at).where(
                table.c.code_hash == code_hash, table.c.used_at.is_not(None))).first()
            if reused is not None:
                conn.execute(update(smart_token).where(smart_token.c.code_hash == code_hash)
                             .values(revoked=True))
        return None

    # --------------------------------------------------------------- tokens

    def save_token(self, *, access_token: str, client_id: str, scope: str, context: dict[str, Any],
                   expires_in: int, refresh_token: str | None = None,
                   refresh_expires_in: int | None = None, code: str | None = None,
                   family: str | None = None) -> None:
        """Store an issued access token (and its refresh token), hashed.

        ``code`` is the authorization code it was issued for; a refreshed token names
        the ``family`` (:attr:`TokenRecord.family`) of the token it replaces instead.
        """
        self.maybe_purge()
        now = _now()
        with self.store.begin() as conn:
            conn.execute(insert(smart_token).values(
                access_hash=hash_secret(access_token),
                refresh_hash=hash_secret(refresh_token) if refresh_token else None,
                client_id=client_id, scope=scope, data=orjson.dumps(context).decode(),
                code_hash=hash_secret(code) if code else family, issued_at=now,
                expires_at=now + expires_in,
                refresh_expires_at=now + refresh_expires_in if refresh_token and refresh_expires_in else None,
                revoked=False))

    def introspect(self, access_token: str) -> TokenRecord | None:
        """Return the active token record of an access token (None: unknown, expired or revoked).

        Every /fhir request runs it: one prebuilt statement on a connection outside any
        transaction (no BEGIN/ROLLBACK round trips), never a cached answer (a revoked
        token is refused at once).
        """
        digest = hash_secret(access_token)
        row = (sqlite_first(self.engine, _INTROSPECT_SQLITE, (digest,))
               if getattr(self.store, "dialect", None) == "sqlite" else False)
        if row is False:  # PostgreSQL (or sqlite3 raised: SQLAlchemy raises it wrapped)
            with self.store.read_one() as conn:
                row = conn.execute(_INTROSPECT, {"access_hash": digest}).first()
        elif row is not None:
            row = _TokenRow(*row)
        if row is None:
            return None
        record = _token(row)
        return record if record.active() else None

    def find_token(self, token: str, hint: str | None = None) -> TokenRecord | None:
        """Return the record of an access or refresh token in any state (None: never issued here)."""
        digest = hash_secret(token)
        columns = [smart_token.c.refresh_hash, smart_token.c.access_hash]
        if hint != "refresh_token":
            columns.reverse()
        with self.engine.connect() as conn:
            for column in columns:
                row = conn.execute(select(smart_token).where(column == digest)).first()
                if row is not None:
                    return _token(row)
        return None

    def find_refresh(self, refresh_token: str) -> TokenRecord | None:
        """Return the token record of a usable refresh token.

        A refresh token that was already exchanged (rotated) and is presented again has
        leaked: the whole family it belongs to is revoked, and None is returned.
        """
        with self.engine.connect() as conn:
            row = conn.execute(select(smart_token).where(
                smart_token.c.refresh_hash == hash_secret(refresh_token))).first()
        if row is None:
            return None
        record = _token(row)
        if record.refresh_expires_at == 0 and not record.revoked:
            self.revoke_family(record)
            return None
        return record if record.refresh_active() else None

    def retire_refresh(self, refresh_token: str) -> None:
        """Make a refresh token unusable after it was exchanged for a new one.

        When another request exchanged it first (a concurrent reuse), the family is revoked.
        """
        digest = hash_secret(refresh_token)
        with self.store.begin() as conn:
            done = conn.execute(update(smart_token).where(
                smart_token.c.refresh_hash == digest, smart_token.c.refresh_expires_at > 0)
                .values(refresh_expires_at=0))
            if done.rowcount == 1:
                return
            row = conn.execute(select(smart_token).where(smart_token.c.refresh_hash == digest)).first()
        if row is not None:
            self.revoke_family(_token(row))

    def revoke(self, access_token: str) -> None:
        """Revoke an access token and its refresh token."""
        with self.store.begin() as conn:
            conn.execute(update(smart_token).where(
                smart_token.c.access_hash == hash_secret(access_token)).values(revoked=True))

    def revoke_record(self, record: TokenRecord) -> None:
        """Revoke one issued token (its access and refresh token)."""
        with self.store.begin() as conn:
            conn.execute(update(smart_token).where(smart_token.c.access_hash == record.access_hash)
                         .values(revoked=True))

    def revoke_family(self, record: TokenRecord) -> None:
        """Revoke every token descending from the same grant as ``record`` (RFC 6819 5.2.2.3)."""
        table = smart_token
        where = table.c.code_hash == record.family if record.family else \
            table.c.access_hash == record.access_hash
        with self.store.begin() as conn:
            conn.execute(update(table).where(where).values(revoked=True))

    # ------------------------------------------------------------------ jti

    def use_jti(self, client_id: str, jti: str, expires_at: int) -> bool:
        """Record a client assertion id; False when it was seen before (a replay)."""
        try:
            with self.store.begin() as conn:
                conn.execute(insert(smart_jti).values(client_id=client_id, jti=jti[:255],
                                                      expires_at=max(expires_at, _now()) + 60))
        except IntegrityError:
            return False
        return True

    # ---------------------------------------------------------------- purge

    def maybe_purge(self) -> None:
        """Purge expired records, at most once per ``purge_interval`` seconds in this process."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + self.purge_interval
        self.purge()

    def purge(self, *, grace: int = 86400) -> None:
        """Delete records that expired more than ``grace`` seconds ago."""
        cutoff = _now() - grace
        with self.store.begin() as conn:
            conn.execute(delete(smart_auth_launch).where(smart_auth_launch.c.expires_at < cutoff))
            conn.execute(delete(smart_auth_code).where(smart_auth_code.c.expires_at < cutoff))
            conn.execute(delete(smart_jti).where(smart_jti.c.expires_at < _now()))
            conn.execute(delete(smart_token).where(and_(
                smart_token.c.expires_at < cutoff,
                or_(smart_token.c.refresh_expires_at.is_(None),
                    smart_token.c.refresh_expires_at < cutoff))))

"""The link registry: issuing, finding, opening and revoking secure patient links.

:class:`PatientLinks` records every link in ``patient_link`` (:mod:`hw_fhir.links.tables`)
and signs its token (:mod:`hw_fhir.links.tokens`); see :mod:`hw_fhir.links` for what
opening a link checks and raises.
"""


from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import insert, select, update

from ..errors import (
    BirthDateRequired,
    ConfigurationError,
    LinkExpired,
    LinkRevoked,
    LinkTampered,
    LinkWrongPatient,
    NotFound,
)
from ..i18n import N_
from .tables import patient_link
from .tokens import ID_BYTES, NOT_VALID, link_key, make_token, parse_token

#: Messages a patient reads (marked for the catalog; the patient pages translate them).
_NO_LONGER_VALID = N_("This link is no longer valid. Ask your care team for a new one.")
_SOMEONE_ELSE = N_("This link belongs to someone else.")
_EXPIRED = N_(
    "This link has expired. A new one comes with your next reminder, or ask your care team."
)
_LOCKED = N_("This link is locked after too many attempts. Ask your care team for a new one.")
_WRONG_BIRTH_DATE = N_("That date of birth does not match. Check it and try again.")
_BIRTH_DATE_NEEDED = N_("Enter your date of birth to open this link.")
#: Every message of the link errors :meth:`PatientLinks.open_link` raises (the patient pages
#: show these, translated; ``tests/test_patient_error_words.py`` checks each has a translation).
LINK_MESSAGES = (NOT_VALID, _NO_LONGER_VALID, _SOMEONE_ELSE, _EXPIRED, _LOCKED, _WRONG_BIRTH_DATE,
                 _BIRTH_DATE_NEEDED)

__all__ = [
    "LINK_PATH",
    "LINK_MESSAGES",
    "MAX_BIRTH_DATE_FAILURES",
    "IssuedLink",
    "LinkTarget",
    "PatientLinks",
    "patient_links",
    "birth_date_check_default",
]

#: URL path of a link; the patient pages serve ``/p/<token>``.
LINK_PATH = "/p/"
#: Wrong birth dates after which a link is locked (revoked).
MAX_BIRTH_DATE_FAILURES = 5
#: Task ids per ``IN (…)`` when looking up live links.
_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class IssuedLink:
    """A link just made: its token, full URL and expiry (Unix seconds)."""

    token: str
    url: str
    link_id: str
    expires_at: int


@dataclass(frozen=True)
class LinkTarget:
    """What an opened link leads to: the Task (as stored now) and its patient."""

    link_id: str
    task_id: str
    patient_id: str
    expires_at: int
    task: dict[str, Any]

    @property
    def task_reference(self) -> str:
        """``Task/<id>``."""
        return f"Task/{self.task_id}"

    @property
    def patient_reference(self) -> str:
        """``Patient/<id>``."""
        return f"Patient/{self.patient_id}"


def birth_date_check_default(settings: Any) -> bool:
    """Tell whether new links ask for the date of birth (setting ``link_birth_date_check``)."""
    value = getattr(settings, "link_birth_date_check", None)
    if not value:
        value = (getattr(settings, "extra", None) or {}).get("link_birth_date_check", value)
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _ref_id(reference: str, resource_type: str) -> str:
    prefix = f"{resource_type}/"
    return reference[len(prefix):] if reference.startswith(prefix) else reference


class PatientLinks:
    """Make, open and revoke secure patient links over a SqlStore."""

    def __init__(self, store: Any, *, secret_key: str, base_url: str = "",
                 lifetime_hours: int = 72, birth_date_check: bool = False) -> None:
        if not secret_key:
            raise ConfigurationError("Secure links need a secret key")
        self.store = store
        self.key = link_key(secret_key)
        self.base_url = base_url.rstrip("/")
        self.lifetime_seconds = int(lifetime_hours) * 3600
        self.birth_date_check = birth_date_check

    # -- tokens ---------------------------------------------------------------------

    def _token(self, link_id: bytes, expires_at: int) -> str:
        return make_token(self.key, link_id, expires_at)

    def _parse(self, token: str) -> tuple[str, int]:
        """Return (link id hex, expiry) of a well-signed token; LinkTampered otherwise."""
        return parse_token(self.key, token)

    def url(self, token: str) -> str:
        """Return the full URL of a token (``{base_url}/p/<token>``)."""
        return f"{self.base_url}{LINK_PATH}{token}"

    # -- issue ----------------------------------------------------------------------

    def make_link(self, task: str, patient: str, *, birth_date_check: bool | None = None,
                  lifetime_hours: int | None = None, now: float | None = None,
                  conn: Any = None) -> IssuedLink:
        """Issue a link opening ``task`` (``Task/<id>`` or id) for ``patient``; return it.

        ``conn`` writes through an open transaction (the reminder being recorded).
        """
        row, issued = self.new_link(task, patient, birth_date_check=birth_date_check,
                                    lifetime_hours=lifetime_hours, now=now)
        if conn is not None:
            conn.execute(insert(patient_link).values(**row))
        else:
            with self.store.begin() as own:
                own.execute(insert(patient_link).values(**row))
        return issued

    def new_link(self, task: str, patient: str, *, birth_date_check: bool | None = None,
                 lifetime_hours: int | None = None,
                 now: float | None = None) -> tuple[dict[str, Any], IssuedLink]:
        """Return a new link and its ``patient_link`` row, not stored yet (insert the row first).

        A link works only once its row is committed: store it before sending the link.
        """
        moment = int(now if now is not None else time.time())
        lifetime = self.lifetime_seconds if lifetime_hours is None else int(lifetime_hours) * 3600
        expires = moment + lifetime
        raw_id = secrets.token_bytes(ID_BYTES)
        row = dict(
            id=raw_id.hex(), task_id=_ref_id(task, "Task"), patient_id=_ref_id(patient, "Patient"),
            created_at=moment, expires_at=expires, failed_checks=0,
            birth_date_check=self.birth_date_check if birth_date_check is None else birth_date_check,
        )
        token = self._token(raw_id, expires)
        return row, IssuedLink(token=token, url=self.url(token), link_id=raw_id.hex(),
                               expires_at=expires)

    def link_for(self, task: str, patient: str, *, min_remaining_hours: float = 24,
                 now: float | None = None) -> IssuedLink:
        """Return a live link of the Task (valid ``min_remaining_hours`` more), or make one.

        Reminders reuse the Task's link while it lives, so each send does not store a
        new one; the token is rebuilt from the stored id and expiry.
        """
        pair = (_ref_id(task, "Task"), _ref_id(patient, "Patient"))
        with self.store.begin() as conn:
            return self.links_for([pair], conn=conn, min_remaining_hours=min_remaining_hours,
                                  now=now)[pair]

    def links_for(self, pairs: Iterable[tuple[str, str]], *, conn: Any,
                  min_remaining_hours: float = 24,
                  now: float | None = None) -> dict[tuple[str, str], IssuedLink]:
        """Return a live link for each ``(Task id, patient id)``, as :meth:`link_for` does.

        One query looks up the live links of all the Tasks and one insert stores the
        missing ones, through ``conn`` (an open write transaction: commit it before
        the links are sent).
        """
        moment = int(now if now is not None else time.time())
        wanted = list(dict.fromkeys(pairs))
        best: dict[tuple[str, str], Any] = {}
        l = patient_link.c
        task_ids = sorted({task_id for task_id, _ in wanted})
        for start in range(0, len(task_ids), _LOOKUP_CHUNK):
            rows = conn.execute(
                select(l.id, l.task_id, l.patient_id, l.expires_at, l.birth_date_check)
                .where(l.task_id.in_(task_ids[start:start + _LOOKUP_CHUNK]), l.revoked_at.is_(None),
                       l.expires_at > moment + int(min_remaining_hours * 3600)))
            for row in rows:
                key = (row.task_id, row.patient_id)
                if key not in best or row.expires_at > best[key].expires_at:
                    best[key] = row
        out: dict[tuple[str, str], IssuedLink] = {}
        new_rows = []
        for key in wanted:
            row = best.get(key)
            if row is None or row.birth_date_check != self.birth_date_check:
                new_row, out[key] = self.new_link(key[0], key[1], now=moment)
                new_rows.append(new_row)
                continue
            token = self._token(bytes.fromhex(row.id), int(row.expires_at))
            out[key] = IssuedLink(token=token, url=self.url(token), link_id=row.id,
                                  expires_at=int(row.expires_at))
        if new_rows:
            conn.execute(insert(patient_link), new_rows)
        return out

    # -- open -----------------------------------------------------------------------

    def open_link(self, token: str, *, dob: str | date | None = None, patient: str | None = None,
                  now: float | None = None) -> LinkTarget:
        """Check a token (and the birth date when the link asks for it); return its target."""
        link_id, expires = self._parse(token)
        moment = int(now if now is not None else time.time())
        with self.store.begin() as conn:
            row = conn.execute(select(patient_link).where(patient_link.c.id == link_id)
                               .with_for_update()).first()
            if row is None or row.expires_at != expires:
                raise LinkTampered(NOT_VALID)
            if row.revoked_at is not None:
                raise LinkRevoked(_NO_LONGER_VALID)
            if moment >= row.expires_at:
                raise LinkExpired(_EXPIRED)
            if patient is not None and _ref_id(patient, "Patient") != row.patient_id:
                raise LinkWrongPatient(_SOMEONE_ELSE)
            refused = self._check_birth_date(conn, row, dob, moment) if row.birth_date_check else None
            if refused is None:
                conn.execute(update(patient_link).where(patient_link.c.id == link_id)
                             .values(opened_at=moment))
        if refused is not None:
            raise refused  # after the commit, so the failure count is kept
        try:
            task = self.store.read("Task", row.task_id).resource
        except NotFound:
            raise LinkRevoked(_NO_LONGER_VALID) from None
        owner = ((task.get("for") or {}).get("reference") or "")
        if _ref_id(owner, "Patient") != row.patient_id:
            raise LinkWrongPatient(_SOMEONE_ELSE)
        return LinkTarget(link_id=row.id, task_id=row.task_id, patient_id=row.patient_id,
                          expires_at=row.expires_at, task=task)

    def _check_birth_date(self, conn: Any, row: Any, dob: str | date | None,
                          moment: int) -> Exception | None:
        """Return the error refusing this birth date (counting the failure), or None."""
        if dob is None or str(dob).strip() == "":
            return BirthDateRequired(_BIRTH_DATE_NEEDED)
        try:
            patient = self.store.read("Patient", row.patient_id).resource
        except NotFound:
            return LinkRevoked(_NO_LONGER_VALID)
        given = dob.isoformat() if isinstance(dob, date) else str(dob).strip()
        if patient.get("birthDate") and hmac.compare_digest(given, str(patient["birthDate"])):
            if row.failed_checks:
                conn.execute(update(patient_link).where(patient_link.c.id == row.id)
                             .values(failed_checks=0))
            return None
        failures = row.failed_checks + 1
        values: dict[str, Any] = {"failed_checks": failures}
        if failures >= MAX_BIRTH_DATE_FAILURES:
            values.update(revoked_at=moment, revoked_reason="birth-date-failures")
        conn.execute(update(patient_link).where(patient_link.c.id == row.id).values(**values))
        if failures >= MAX_BIRTH_DATE_FAILURES:
            return LinkRevoked(_LOCKED)
        return LinkWrongPatient(_WRONG_BIRTH_DATE)

    def is_live(self, link_id: str) -> bool:
        """Tell whether a link (by id) still exists and is not revoked.

        Sessions a link opened check this on every request, so revoking the link ends them.
        """
        with self.store.engine.connect() as conn:
            revoked = conn.execute(select(patient_link.c.revoked_at)
                                   .where(patient_link.c.id == link_id)).first()
        return revoked is not None and revoked.revoked_at is None

    # -- revoke ---------------------------------------------------------------------

    def revoke(self, token: str, *, reason: str = "revoked", now: float | None = None) -> None:
        """Revoke one link (its token must be well signed)."""
        link_id, _ = self._parse(token)
        self._revoke(patient_link.c.id == link_id, reason, now)

    def revoke_task(self, task: str, *, reason: str = "task-closed", now: float | None = None) -> int:
        """Revoke every link of a Task; return how many were revoked."""
        return self._revoke(patient_link.c.task_id == _ref_id(task, "Task"), reason, now)

    def revoke_patient(self, patient: str, *, reason: str = "revoked", now: float | None = None) -> int:
        """Revoke every link of a patient; return how many were revoked."""
        return self._revoke(patient_link.c.patient_id == _ref_id(patient, "Patient"), reason, now)

    def _revoke(self, where: Any, reason: str, now: float | None) -> int:
        moment = int(now if now is not None else time.time())
        with self.store.begin() as conn:
            done = conn.execute(update(patient_link)
                                .where(where, patient_link.c.revoked_at.is_(None))
                                .values(revoked_at=moment, revoked_reason=reason[:64]))
        return int(done.rowcount or 0)


def patient_links(services: Any) -> PatientLinks:
    """Return the link service of running services (settings: secret, base URL, lifetime)."""
    settings = services.settings
    return PatientLinks(services.store, secret_key=settings.secret_key, base_url=settings.base_url,
                        lifetime_hours=settings.link_lifetime_hours,
                        birth_date_check=birth_date_check_default(settings))


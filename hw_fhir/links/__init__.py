"""Secure patient links: signed, expiring, bound to one Task and one patient, revocable.

A link is ``{base_url}/p/<token>``. The token is 45 URL-safe characters::

    base64url(link id (12 random bytes) + expiry (4 bytes, Unix seconds))
    "." base64url(HMAC-SHA256(key, "hw-fhir.link.v1" + those 16 bytes)[:16])

It carries **no PHI**: not the Task id, not the patient id, no name or date — only a
random id and its expiry. The key is derived from ``Settings.secret_key``. The
``patient_link`` table (:mod:`hw_fhir.links.tables`) holds what the id opens
(Task, Patient), whether the date of birth is asked as a second factor, and the
revocation (``revoked_at``). :meth:`PatientLinks.open_link` raises:

* :class:`~hw_fhir.errors.LinkTampered` — malformed token, bad signature or unknown id;
* :class:`~hw_fhir.errors.LinkExpired` — past its lifetime (``link_lifetime_hours``);
* :class:`~hw_fhir.errors.LinkRevoked` — revoked, or locked after
  :data:`MAX_BIRTH_DATE_FAILURES` wrong birth dates;
* :class:`~hw_fhir.errors.BirthDateRequired` — the link needs ``dob`` and none was given;
* :class:`~hw_fhir.errors.LinkWrongPatient` — wrong birth date, the Task now belongs to
  someone else, or the signed-in patient (``patient=``) is another one.

Errors never say which patient or Task a link belongs to. The birth-date check is
on for every new link when ``Settings.link_birth_date_check`` (or the config file key
``link_birth_date_check``) is true, and can be set per link.

The package: :mod:`~hw_fhir.links.tokens` (signing and reading tokens),
:mod:`~hw_fhir.links.tables` (the ``patient_link`` table) and
:mod:`~hw_fhir.links.registry` (issuing, opening and revoking links).
"""

from __future__ import annotations

from .registry import (
    LINK_MESSAGES,
    LINK_PATH,
    MAX_BIRTH_DATE_FAILURES,
    IssuedLink,
    LinkTarget,
    PatientLinks,
    birth_date_check_default,
    patient_links,
)
from .tables import patient_link
from .tokens import link_key

__all__ = [
    "LINK_PATH",
    "LINK_MESSAGES",
    "MAX_BIRTH_DATE_FAILURES",
    "IssuedLink",
    "LinkTarget",
    "PatientLinks",
    "patient_links",
    "link_key",
    "birth_date_check_default",
    "patient_link",
]

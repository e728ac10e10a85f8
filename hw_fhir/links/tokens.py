"""Link tokens: signing a link id and expiry, and reading them back (no PHI in a token).

A token is 45 URL-safe characters::

    base64url(link id (12 random bytes) + expiry (4 bytes, Unix seconds))
    "." base64url(HMAC-SHA256(key, "hw-fhir.link.v1" + those 16 bytes)[:16])
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from ..errors import LinkTampered
from ..i18n import N_

__all__ = ["ID_BYTES", "NOT_VALID", "link_key", "make_token", "parse_token"]

#: Message of a malformed, badly signed or unknown link (marked for the catalog).
NOT_VALID = N_("This link is not valid. Check that it was copied completely.")
_CONTEXT = b"hw-fhir.link.v1"
#: Random bytes of a link id.
ID_BYTES = 12
_SIG_BYTES = 16


def link_key(secret_key: str) -> bytes:
    """Derive the link signing key from the app's secret key."""
    return hmac.new(secret_key.encode(), b"hw-fhir patient link key", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, _CONTEXT + body, hashlib.sha256).digest()[:_SIG_BYTES]


def make_token(key: bytes, link_id: bytes, expires_at: int) -> str:
    """Return the signed token of a link id (raw bytes) and its expiry (Unix seconds)."""
    body = link_id + expires_at.to_bytes(4, "big")
    return f"{_b64(body)}.{_b64(_sign(key, body))}"


def parse_token(key: bytes, token: str) -> tuple[str, int]:
    """Return (link id hex, expiry) of a well-signed token; LinkTampered otherwise."""
    if not isinstance(token, str) or len(token) > 100 or token.count(".") != 1:
        raise LinkTampered(NOT_VALID)
    head, _, sig = token.partition(".")
    try:
        body, mac = _unb64(head), _unb64(sig)
    except (binascii.Error, ValueError):
        raise LinkTampered(NOT_VALID) from None
    if len(body) != ID_BYTES + 4 or not hmac.compare_digest(mac, _sign(key, body)):
        raise LinkTampered(NOT_VALID)
    return body[:ID_BYTES].hex(), int.from_bytes(body[ID_BYTES:], "big")

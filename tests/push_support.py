"""A local Web Push service over HTTP on 127.0.0.1, standing in for a browser vendor's push service.

It checks what a real one checks, the way RFC 8030/8291/8292 say: the VAPID
``Authorization: vapid t=<JWT>, k=<public key>`` header (ES256 signature verified
with the key in ``k``, ``aud`` = this service's origin, ``exp`` within 24 hours,
``sub`` a contact), ``Content-Encoding: aes128gcm`` and a ``TTL``; then it decrypts the
body with ``http_ece`` using the private key of the subscription the test made (as
the browser would). Answers 201, or what the test asks for an endpoint (410...).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class BrowserSubscription:
    """A browser's side of a subscription: the key pair and auth secret the test made."""

    token: str
    endpoint: str
    private_key: Any
    auth: bytes

    def as_json(self) -> dict[str, Any]:
        """Return it as the browser's ``PushSubscription.toJSON()``."""
        public = self.private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)}}


@dataclass
class Received:
    """One push the service accepted, decrypted."""

    token: str
    payload: dict[str, Any]
    headers: dict[str, str]
    claims: dict[str, Any]


@dataclass
class PushService:
    """The HTTP server; ``answers[token]`` overrides the status for one endpoint."""

    received: list[Received] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    subscriptions: dict[str, BrowserSubscription] = field(default_factory=dict)
    requests: int = 0

    def __post_init__(self) -> None:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                service.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, why = service.handle(self.path, dict(self.headers.items()), body)
                if why:
                    service.rejected.append((self.path, why))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                if status == 201:
                    self.send_header("Location", f"{service.url}/message/{service.requests}")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def subscribe(self) -> BrowserSubscription:
        """Make a subscription as a browser would: a fresh P-256 key pair and a 16-byte secret."""
        token = b64url(os.urandom(12))
        sub = BrowserSubscription(token=token, endpoint=f"{self.url}/push/{token}",
                               private_key=ec.generate_private_key(ec.SECP256R1()), auth=os.urandom(16))
        self.subscriptions[token] = sub
        return sub

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        """Check and decrypt one push; return (status, why rejected or "")."""
        headers = {k.lower(): v for k, v in headers.items()}
        token = path.rsplit("/", 1)[-1]
        sub = self.subscriptions.get(token)
        if not path.startswith("/push/") or sub is None:
            return 404, "unknown subscription"
        if token in self.answers:
            return self.answers[token], ""
        claims, problem = self.check_vapid(headers.get("authorization", ""))
        if problem:
            return 403, problem
        if headers.get("content-encoding") != "aes128gcm":
            return 400, "content-encoding is not aes128gcm"
        if "ttl" not in headers:
            return 400, "no TTL header"
        try:
            plain = http_ece.decrypt(body, private_key=sub.private_key, auth_secret=sub.auth,
                                     version="aes128gcm")
        except Exception as exc:  # noqa: BLE001 - any decryption failure is a 400 here
            return 400, f"cannot decrypt: {type(exc).__name__}"
        self.received.append(Received(token=token, payload=json.loads(plain), headers=headers,
                                      claims=claims))
        return 201, ""

    def check_vapid(self, authorization: str) -> tuple[dict[str, Any], str]:
        """Verify ``vapid t=…, k=…`` (RFC 8292 §2, §3)."""
        if not authorization.lower().startswith("vapid "):
            return {}, "no vapid authorization"
        parts = dict(p.strip().split("=", 1) for p in authorization[6:].split(","))
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
            claims = jwt.decode(parts["t"], key=public, algorithms=["ES256"], audience=self.url,
                                options={"require": ["exp", "aud", "sub"]})
        except (KeyError, ValueError, jwt.PyJWTError) as exc:
            return {}, f"bad vapid token: {type(exc).__name__}: {exc}"
        if claims["exp"] > time.time() + 24 * 3600:
            return {}, "vapid exp more than 24 hours ahead"
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            return {}, "vapid sub is not a contact"
        claims["k"] = parts["k"]
        return claims, ""

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

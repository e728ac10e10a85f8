"""The email channel: SMTP with the standard library (``smtplib``), plain text, optional TLS.

Settings: ``smtp_host``, ``smtp_port``, ``smtp_username``/``smtp_password`` (login
only when a username is set), ``smtp_starttls`` (STARTTLS after connecting),
``smtp_ssl`` (implicit TLS, usually port 465), ``mail_from``; config-file keys
``smtp_cafile`` (trust this CA file instead of the system's, e.g. a private relay)
and ``smtp_timeout`` (seconds, default 30). Certificates are always verified.

Guarantee: SMTP has no idempotency key. The attempt's key becomes the
``Message-ID`` (a digest of it, :func:`message_id`), the same on every retry of the same attempt, so
mail systems and clients that de-duplicate by Message-ID show one message. A worker
that dies after the server accepted the message and before recording it sends it
again once its lease expires (at least once, window = one SMTP transaction).
"""

from __future__ import annotations

import hashlib
import smtplib
import socket
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from datetime import datetime, timezone
from typing import Any

from ..errors import HeldDeliveryError, PermanentDeliveryError, TransientDeliveryError
from .base import Delivery, Message, medium, telecom

__all__ = ["EmailChannel", "MESSAGE_ID_SYSTEM", "message_id"]

#: ``Communication.identifier`` system of the Message-ID of an email sent.
MESSAGE_ID_SYSTEM = "http://hw-fhir.org/fhir/sid/email-message-id"


def message_id(key: str, domain: str) -> str:
    """Return the Message-ID of an attempt: a digest of its key (no Task id in mail headers)."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


class EmailChannel:
    """Send messages by email over SMTP."""

    name = "email"
    medium = medium("EMAILWRIT", "email")
    guarantee = ("At least once: SMTP has no idempotency key; a retry of the same attempt reuses "
                 "its Message-ID so clients de-duplicate it.")

    def __init__(self, *, host: str = "127.0.0.1", port: int = 25, username: str = "",
                 password: str = "", starttls: bool = False, use_ssl: bool = False,
                 sender: str = "hw-fhir <no-reply@localhost>", cafile: str | None = None,
                 timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.use_ssl = use_ssl
        self.sender = sender
        self.cafile = cafile
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Any) -> "EmailChannel":
        """Build the channel from the ``smtp_*`` and ``mail_from`` settings."""
        extra = getattr(settings, "extra", None) or {}
        return cls(host=settings.smtp_host, port=settings.smtp_port,
                   username=settings.smtp_username, password=settings.smtp_password,
                   starttls=settings.smtp_starttls, use_ssl=settings.smtp_ssl,
                   sender=settings.mail_from, cafile=extra.get("smtp_cafile"),
                   timeout=float(extra.get("smtp_timeout", 30)))

    def address(self, recipient: Mapping[str, Any]) -> str | None:
        """Return the recipient's email address."""
        return telecom(recipient, "email")

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)

    def build(self, message: Message) -> EmailMessage:
        """Return the email for a message (headers and plain-text body)."""
        if not message.to:
            raise PermanentDeliveryError("The recipient has no email address")
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = formataddr(("", message.to)) if "<" not in message.to else message.to
        email["Subject"] = message.subject
        email["Date"] = format_datetime(datetime.now(timezone.utc))
        domain = parseaddr(self.sender)[1].rpartition("@")[2] or "hw-fhir"
        email["Message-ID"] = message_id(message.idempotency_key, domain)
        email["Auto-Submitted"] = "auto-generated"
        if message.priority == "stat":
            email["Importance"] = "high"
            email["X-Priority"] = "1"
        for name, value in message.headers.items():
            email[name] = value
        email.set_content(message.text)
        if message.html:
            email.add_alternative(message.html, subtype="html")
        return email

    def _connect(self, timeout: float | None = None) -> smtplib.SMTP:
        timeout = self.timeout if timeout is None else timeout
        if self.use_ssl:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=timeout, context=self._context())
        client = smtplib.SMTP(self.host, self.port, timeout=timeout)
        if self.starttls:
            client.starttls(context=self._context())
        return client

    def check(self) -> str | None:
        """Return why the SMTP server cannot be used now (connect, TLS, login), or None.

        Waits at most 5 seconds (a start-up check must not hang on an unreachable host).
        """
        try:
            with self._connect(timeout=min(self.timeout, 5.0)) as client:
                if self.username:
                    client.login(self.username, self.password)
                client.noop()
        except smtplib.SMTPAuthenticationError as exc:
            return f"email: the SMTP server {self.host}:{self.port} refused the login ({exc.smtp_code})"
        except (OSError, smtplib.SMTPException) as exc:
            return (f"email: cannot reach the SMTP server {self.host}:{self.port} "
                    f"({type(exc).__name__}: {exc}); set HW_FHIR_SMTP_HOST and HW_FHIR_SMTP_PORT")
        return None

    def send(self, message: Message) -> Delivery:
        """Send one email; 5xx answers are permanent, 4xx and connection trouble transient."""
        email = self.build(message)
        sent = False
        try:
            with self._connect() as client:
                if self.username:
                    client.login(self.username, self.password)
                refused = client.send_message(email)
                sent = True
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            error = "; ".join(f"{code} {text!r}" for code, text in exc.recipients.values())
            if all(400 <= c < 500 for c in codes):
                raise TransientDeliveryError(f"Recipient deferred: {error}") from None
            raise PermanentDeliveryError(f"Recipient refused: {error}") from None
        except smtplib.SMTPAuthenticationError as exc:  # our settings, not the recipient: held
            raise HeldDeliveryError(f"SMTP login refused ({exc.smtp_code}): check "
                                    "HW_FHIR_SMTP_USERNAME and HW_FHIR_SMTP_PASSWORD") from None
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientDeliveryError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from None
            raise PermanentDeliveryError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from None
        except ssl.SSLError as exc:
            raise PermanentDeliveryError(f"TLS with the SMTP server failed: {exc}") from None
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            raise TransientDeliveryError(f"SMTP server unreachable: {exc}", maybe_sent=sent) from None
        if refused:
            raise PermanentDeliveryError(f"Recipient refused: {refused}")
        return Delivery(status="completed", vendor_id=email["Message-ID"],
                        vendor_system=MESSAGE_ID_SYSTEM)

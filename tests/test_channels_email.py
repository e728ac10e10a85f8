"""The email channel against a real SMTP server (aiosmtpd) started in the test, plain and STARTTLS."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import socket
import ssl
from email import policy

import pytest
from aiosmtpd.controller import Controller

from hw_fhir.channels import EmailChannel, Message
from hw_fhir.channels.email import message_id
from hw_fhir.errors import PermanentDeliveryError, TransientDeliveryError
from hw_fhir.reminders import run_reminders

from reminder_support import announce, communications, jobs, make_patient, make_services, make_task


class Inbox:
    """An aiosmtpd handler keeping every message; some recipients are refused."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone@"):
            return "550 5.1.1 No such user"
        if address.startswith("busy@"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield inbox, controller.port
    controller.stop()


def _certificate(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _message(to: str, key: str = "reminder/t1/before-due#1") -> Message:
    return Message(kind="reminder", purpose="before-due", channel="email", to=to,
                   recipient="Patient/p1", subject="Reminder from Elm Clinic",
                   text="Reminder from Elm Clinic: you have an activity to complete. "
                        "Open it here: https://hw.example.org/p/abc.def",
                   idempotency_key=key)


def test_reminders_arrive_by_email_with_headers_and_no_clinical_text(smtp, tmp_path):
    inbox, port = smtp
    services = make_services(tmp_path, smtp_host="127.0.0.1", smtp_port=port, practice_name="Elm Clinic",
                             mail_from="Elm Clinic <reminders@elm.example>")
    make_patient(services.store, "p1", email="ava@example.org")
    task = make_task(services.store, "p1", due=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2),
                     channel="email")
    announce(services, task)
    run = run_reminders(services, worker="w")
    assert run.sent == 1
    rcpts, raw = inbox.messages[0]
    assert rcpts == ["ava@example.org"]
    mail = email.message_from_bytes(raw, policy=policy.default)
    assert mail["From"] == "Elm Clinic <reminders@elm.example>" and mail["To"] == "ava@example.org"
    assert mail["Subject"] == "A new activity from Elm Clinic"
    assert mail["Auto-Submitted"] == "auto-generated"
    job = jobs(services, purpose="assigned")[0]
    assert mail["Message-ID"] == message_id(f"{job.id}#1", "elm.example")
    body = mail.get_content()
    assert "Elm Clinic" in body and "https://hw.example.org/p/" in body
    for clinical in ("mood", "Mood", "PHQ", "depress", "Sam", "Sample", "score"):
        assert clinical not in body and clinical not in mail["Subject"]
    comm = communications(services)[0]
    assert comm["status"] == "completed"
    assert comm["medium"][0]["coding"][0]["code"] == "EMAILWRIT"
    assert {i["value"] for i in comm["identifier"]} >= {mail["Message-ID"]}
    services.close()


def test_refused_and_deferred_recipients(smtp):
    inbox, port = smtp
    channel = EmailChannel(port=port)
    with pytest.raises(PermanentDeliveryError, match="550"):
        channel.send(_message("gone@example.org"))
    with pytest.raises(TransientDeliveryError, match="451"):
        channel.send(_message("busy@example.org"))
    with pytest.raises(PermanentDeliveryError):
        channel.send(_message(""))
    assert inbox.messages == []


def test_an_unreachable_server_is_a_transient_failure():
    with pytest.raises(TransientDeliveryError, match="unreachable"):
        EmailChannel(port=_free_port(), timeout=2).send(_message("ava@example.org"))


def test_starttls_with_a_verified_certificate(tmp_path):
    cert, key = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port(), tls_context=server_tls,
                            require_starttls=True)
    controller.start()
    try:
        plain = EmailChannel(port=controller.port)
        with pytest.raises((PermanentDeliveryError, TransientDeliveryError)):
            plain.send(_message("ava@example.org"))  # the server insists on STARTTLS
        untrusted = EmailChannel(port=controller.port, starttls=True)
        with pytest.raises(PermanentDeliveryError, match="TLS"):
            untrusted.send(_message("ava@example.org"))  # self-signed, not in the system store
        trusted = EmailChannel(port=controller.port, starttls=True, cafile=str(cert))
        trusted.send(_message("ava@example.org", key="k#2"))
    finally:
        controller.stop()
    assert len(inbox.messages) == 1 and b"Reminder from Elm Clinic" in inbox.messages[0][1]

"""A local HTTP server playing the SMS vendor's Messages API (and signing callbacks like it)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from hw_fhir_sms_twilio_like import signature

ACCOUNT_SID = "AC00000000000000000000000000000001"
AUTH_TOKEN = "test-auth-token"
INVALID_NUMBER = "+15550000000"
UNSUBSCRIBED_NUMBER = "+15550000666"


class FakeVendor:
    """Accepts messages (201 queued), refuses bad numbers, fails on demand (``fail_next``)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail_next: list[int] = []
        app = Flask("fake_sms_vendor")

        @app.post("/2010-04-01/Accounts/<sid>/Messages.json")
        def create_message(sid: str) -> Any:
            auth = request.authorization
            if sid != ACCOUNT_SID or auth is None or (auth.username, auth.password) != (ACCOUNT_SID,
                                                                                       AUTH_TOKEN):
                return jsonify(code=20003, message="Authenticate", status=401), 401
            if self.fail_next:
                status = self.fail_next.pop(0)
                return jsonify(code=20500, message="Internal Server Error", status=status), status
            to = request.form.get("To", "")
            if to == INVALID_NUMBER:
                return jsonify(code=21211, message=f"The 'To' number {to} is not a valid phone number.",
                               status=400), 400
            if to == UNSUBSCRIBED_NUMBER:
                return jsonify(code=21610, message="Attempt to send to unsubscribed recipient",
                               status=400), 400
            sid_ = f"SM{uuid.uuid4().hex}"
            self.messages.append({"sid": sid_, **request.form.to_dict()})
            return jsonify(sid=sid_, status="queued", to=to, body=request.form.get("Body")), 201

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()


def signed_post(client: Any, url: str, path: str, form: dict[str, str],
                token: str = AUTH_TOKEN) -> Any:
    """POST a form to the app the way the vendor calls back: with ``X-Twilio-Signature``."""
    return client.post(path, data=form,
                       headers={"X-Twilio-Signature": signature(token, url + path, form)})

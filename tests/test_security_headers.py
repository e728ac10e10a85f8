"""The security headers every response gets (:func:`smart_app.security._security_headers` runs
once per request): what a view set itself is kept, X-Frame-Options never leaves, a nonce
asked for is in the CSP, and a request without a session cookie starts no session."""

from __future__ import annotations

from typing import Any

from flask import Response

from smart_app.security import content_security_policy, csp_nonce
from smart_app.state import services


def _routes(app: Any) -> None:
    @app.get("/t/plain")
    def plain() -> Response:
        return Response("plain")

    @app.get("/t/own")
    def own() -> Response:
        return Response("own", headers={"X-Frame-Options": "DENY",
                                        "Content-Security-Policy": "default-src 'none'",
                                        "Referrer-Policy": "no-referrer"})

    @app.get("/t/nonce")
    def nonce() -> Response:
        return Response(csp_nonce())


def test_a_plain_response_gets_the_three_headers(app: Any, client: Any) -> None:
    _routes(app)
    response = client.get("/t/plain")
    frame_ancestors = services(app).settings.frame_ancestors
    assert response.headers["Content-Security-Policy"] == content_security_policy(frame_ancestors)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers.getlist("Content-Security-Policy") == [
        content_security_policy(frame_ancestors)]
    assert "Set-Cookie" not in response.headers  # no session was started


def test_what_a_view_set_is_kept_but_x_frame_options_is_dropped(app: Any, client: Any) -> None:
    _routes(app)
    response = client.get("/t/own")
    assert "X-Frame-Options" not in response.headers
    assert response.headers.getlist("Content-Security-Policy") == ["default-src 'none'"]
    assert response.headers.getlist("Referrer-Policy") == ["no-referrer"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_nonce_asked_for_is_in_that_response_only(app: Any, client: Any) -> None:
    _routes(app)
    first, second = client.get("/t/nonce"), client.get("/t/nonce")
    for response in (first, second):
        nonce = response.get_data(as_text=True)
        assert f"'nonce-{nonce}'" in response.headers["Content-Security-Policy"]
    assert first.get_data() != second.get_data()
    assert "nonce-" not in client.get("/t/plain").headers["Content-Security-Policy"]

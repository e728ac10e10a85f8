"""hw_fhir.urls: the one URL check behind sanitized links, media sources and ``next`` redirects;
and the sign-out ``next`` over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from conftest import serve
from patient_support import csrf, give_homework, link_for, patient_app

from hw_fhir import render
from hw_fhir.urls import local_path, safe_link, safe_media

OFF_SITE = [
    "//evil.example/", "/\\evil.example/", "\\\\evil.example\\", "\\/evil.example/",
    "/\t/evil.example/", "/%09/evil.example/".replace("%09", "\t"), " //evil.example",
    "https:/\\evil.example", "https:evil.example", "https://user@evil.example/",
    "https://evil.example\\@good.example/", "http:\\\\evil.example",
]
SCRIPTY = [
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\nscript:alert(1)", "java\tscript:x",
    " javascript:alert(1)", "\x01javascript:alert(1)", "vbscript:x", "data:text/html,<script>",
    "data:image/svg+xml;base64,PHN2Zz4=", "file:///etc/passwd", "jar:https://x/!/",
]


@pytest.mark.parametrize("url", OFF_SITE + SCRIPTY)
def test_tricks_are_refused_everywhere(url: str) -> None:
    assert local_path(url) is None
    assert safe_link(url) is None
    assert safe_media(url, allow_data_images=True) is None


@pytest.mark.parametrize("url", ["/p/abc", "/my/?x=1#y", "/static/media/audio/body-scan.mp3"])
def test_site_paths_pass(url: str) -> None:
    assert local_path(url) == url and safe_link(url) == url and safe_media(url) == url


def test_each_check_takes_only_its_kinds() -> None:
    assert safe_link("https://example.org/a") == "https://example.org/a"
    assert safe_link("http://example.org/a") == "http://example.org/a"
    assert safe_link("tel:988") == "tel:988" and safe_link("mailto:care@example.org")
    assert safe_link("#top") == "#top"
    assert local_path("https://example.org/") is None and local_path("#top") is None
    assert safe_media("http://example.org/a.png") is None  # media only over https
    assert safe_media("https://example.org/a.png") == "https://example.org/a.png"
    png = "data:image/png;base64,iVBORw0KGgo="
    assert safe_media(png) is None and safe_media(png, allow_data_images=True) == png


def test_sanitizer_and_media_use_the_checks() -> None:
    dirty = ('<p><a href="/\\evil.example/">a</a><a href="java&#9;script:x">b</a>'
             '<a href="/ok">c</a><a href="https://example.org/">d</a></p>')
    clean = render.sanitize_xhtml(dirty)
    assert "evil" not in clean and "script" not in clean
    assert '<a>a</a><a>b</a><a href="/ok"' in clean and 'href="https://example.org/"' in clean
    media = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-itemMedia"

    def item(url: str, content_type: str = "image/png") -> Any:
        return render.build_form({"resourceType": "Questionnaire", "item": [{
            "linkId": "m", "type": "display", "text": "M", "extension": [
                {"url": media, "valueAttachment": {"contentType": content_type, "url": url}}]}]}
        ).items[0].media

    assert item("/\\evil.example/x.png") is None
    assert item("https://example.org/x.png").url == "https://example.org/x.png"
    assert item("data:image/png;base64,iVBORw0KGgo=").url.startswith("data:image/png")
    assert item("data:image/png;base64,iVBORw0KGgo=", "audio/mpeg") is None
    assert item("data:image/gif;base64,R0lGOD==", "image/png") is None


@pytest.mark.parametrize("target", ["/\\evil.example/", "//evil.example/p/x", "/p/\\evil",
                                    "https://evil.example/p/", "/my/../p/x\r\nX: y"])
def test_sign_out_next_stays_on_the_site(app_config: dict[str, Any], target: str) -> None:
    app = patient_app(app_config)
    server = serve(app)
    try:
        task = give_homework(app, "phq-9")
        http = requests.Session()
        assert http.get(server.url + link_for(app, task), allow_redirects=False).status_code == 302
        home = http.get(server.url + "/my/")
        out = http.post(server.url + "/my/signout", data={"csrf_token": csrf(home.text),
                                                            "next": target}, allow_redirects=False)
        assert out.status_code == 200 and "Location" not in out.headers
        http.get(server.url + link_for(app, task), allow_redirects=False)
        home = http.get(server.url + "/my/")
        good = link_for(app, task)
        out = http.post(server.url + "/my/signout", data={"csrf_token": csrf(home.text),
                                                            "next": good}, allow_redirects=False)
        assert out.status_code == 302 and out.headers["Location"].endswith(good)
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()

"""Rich item content: sanitised ``rendering-xhtml`` text and SDC ``itemMedia``."""

from __future__ import annotations

import html
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

from ..urls import safe_link, safe_media
from .item_display import ITEM_MEDIA, RENDERING_XHTML, extension_value
from .view_model import Media

__all__ = ["sanitize_xhtml", "item_xhtml", "item_media"]

_ALLOWED_TAGS = frozenset({"p", "ol", "ul", "li", "a", "strong", "em", "b", "i", "br"})
_DROP_CONTENT = frozenset(
    {"script", "style", "iframe", "object", "embed", "template", "svg", "math"}
)


class _Sanitizer(HTMLParser):
    """Rebuild markup from allowed tags and escaped text only."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.dropping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_CONTENT:
            self.dropping += 1
            return
        if self.dropping or tag not in _ALLOWED_TAGS:
            return
        if tag == "br":
            self.out.append("<br>")
            return
        if tag == "a":
            href = safe_link(next((v for k, v in attrs if k == "href" and v), "").strip())
            if href is None:
                self.out.append("<a>")
            else:
                extra = (
                    ' target="_blank" rel="noopener noreferrer"'
                    if not href.lower().startswith(("tel:", "mailto:", "#"))
                    else ""
                )
                self.out.append(f'<a href="{html.escape(href, quote=True)}"{extra}>')
        else:
            self.out.append(f"<{tag}>")
        self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" and not self.dropping:
            self.out.append("<br>")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_CONTENT:
            self.dropping = max(0, self.dropping - 1)
            return
        if self.dropping or tag not in self.open:
            return
        while self.open:
            current = self.open.pop()
            self.out.append(f"</{current}>")
            if current == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        while self.open:
            self.out.append(f"</{self.open.pop()}>")
        return "".join(self.out).strip()


def sanitize_xhtml(markup: str) -> str:
    """Return markup reduced to safe formatting tags and links; everything else is text."""
    parser = _Sanitizer()
    parser.feed(markup if isinstance(markup, str) else "")
    parser.close()
    return parser.result()


def item_xhtml(definition: Mapping[str, Any]) -> str | None:
    """Return an item's sanitised ``rendering-xhtml`` text, or None."""
    text_element = definition.get("_text")
    if not isinstance(text_element, dict):
        return None
    markup = extension_value(text_element, RENDERING_XHTML)
    if not isinstance(markup, str) or not markup.strip():
        return None
    return sanitize_xhtml(markup) or None


def item_media(definition: Mapping[str, Any]) -> Media | None:
    """Return an item's SDC ``itemMedia`` when its URL is safe to embed, or None."""
    attachment = extension_value(definition, ITEM_MEDIA)
    if not isinstance(attachment, dict):
        return None
    content_type = str(attachment.get("contentType") or "")
    url = safe_media(attachment.get("url"), allow_data_images=content_type.startswith("image/"))
    if url is None or (
        url.startswith("data:") and not url.lower().startswith(f"data:{content_type.lower()};")
    ):
        return None
    return Media(
        url=url,
        content_type=content_type,
        title=str(attachment.get("title") or definition.get("text") or "Media"),
    )


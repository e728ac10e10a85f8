"""URL checks for everything hw-fhir puts in a page or a redirect: links, media, ``next``.

One parser decides, the way browsers would read the URL, and every caller uses it:

* :func:`local_path` — a same-origin path (``/p/abc?x=1``) for redirect targets such as
  ``next``: never ``//host``, ``/\\host``, ``\\\\host`` or a scheme.
* :func:`safe_link` — an ``<a href>`` in sanitized markup: ``https``/``http`` with a host,
  a same-origin path, ``#fragment``, ``tel:`` or ``mailto:``.
* :func:`safe_media` — an image/audio/video source: ``https`` with a host or a
  same-origin path, and (when asked) ``data:`` images of a few raster types.

Every check refuses backslashes, whitespace and control characters anywhere in the URL
(browsers drop tabs and newlines, so ``java\\nscript:`` is ``javascript:``, and treat
``\\`` as ``/`` in http URLs), user-info (``https://good@evil``) and anything that is
not a plain string. Each returns the URL unchanged when it passes, else None.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["local_path", "safe_link", "safe_media", "DATA_IMAGE_TYPES"]

#: ``data:`` image types :func:`safe_media` may accept (never SVG: it can carry script).
DATA_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\\\u2028\u2029\ufeff]")
_DATA_IMAGE = re.compile(r"^data:(image/(?:png|jpeg|gif|webp));base64,[A-Za-z0-9+/]+={0,2}$", re.I)
_MAX_LENGTH = 2048


def _clean(url: object, *, limit: int = _MAX_LENGTH) -> str | None:
    if not isinstance(url, str) or not url or len(url) > limit or _FORBIDDEN.search(url):
        return None
    return url


def local_path(url: object) -> str | None:
    """Return ``url`` if it is a path on this site (starts with one ``/``), else None."""
    text = _clean(url)
    if text is None or not text.startswith("/") or text.startswith("//"):
        return None
    parts = urlsplit(text)
    if parts.scheme or parts.netloc:
        return None
    return text


def _web_url(text: str, schemes: tuple[str, ...]) -> str | None:
    parts = urlsplit(text)
    if parts.scheme.lower() not in schemes or not parts.netloc:
        return None
    if "@" in parts.netloc or not parts.hostname:
        return None
    if not text.lower().startswith(parts.scheme.lower() + "://"):
        return None
    return text


def safe_link(url: object) -> str | None:
    """Return ``url`` if it may be a link in sanitized markup, else None."""
    text = _clean(url)
    if text is None:
        return None
    if text.startswith("#"):
        return text
    if text.startswith("/"):
        return local_path(text)
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme in ("tel", "mailto"):
        return text if len(text) > len(scheme) + 1 else None
    return _web_url(text, ("https", "http"))


def safe_media(url: object, *, allow_data_images: bool = False) -> str | None:
    """Return ``url`` if it may be the source of an image, audio or video, else None."""
    if allow_data_images and isinstance(url, str) and url[:5].lower() == "data:":
        return url if len(url) <= 1_000_000 and _DATA_IMAGE.match(url) else None
    text = _clean(url)
    if text is None:
        return None
    if text.startswith("/"):
        return local_path(text)
    return _web_url(text, ("https",))

"""Form field names: how an item's answers are named in the HTML form.

Every answer field is named ``q:<path>`` (:data:`FIELD_PREFIX`). A path is the item's
``linkId`` (characters other than ``A-Z a-z 0-9 _ -`` percent-encoded), children follow
a ``/`` and an instance of a repeating group carries ``.<n>``. The free text of an
``open-choice`` question is ``q:<path>~other`` (:data:`OTHER_SUFFIX`).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

__all__ = ["FIELD_PREFIX", "OTHER_SUFFIX", "path_segment", "join_path", "field_id"]

FIELD_PREFIX = "q:"
OTHER_SUFFIX = "~other"

_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def path_segment(link_id: str) -> str:
    """Return a linkId as one path segment (percent-encoded, no ``.`` or ``~``)."""
    return quote(link_id, safe="").replace(".", "%2E").replace("~", "%7E")


def join_path(prefix: str, link_id: str) -> str:
    """Return the field path of ``link_id`` inside the container at ``prefix``."""
    return f"{prefix}/{path_segment(link_id)}" if prefix else path_segment(link_id)


def field_id(name: str) -> str:
    """Return an HTML id for a field path (stable, letters, digits, ``-`` and ``_``)."""
    return "f-" + _SAFE.sub("-", unquote(name).replace("/", "--"))


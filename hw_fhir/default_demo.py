"""Built-in plugin: in ``hw-fhir demo`` only, the inbox catchers replace email and SMS.

With ``Settings.demo`` on, ``register_channels`` returns the demo inbox's ``email``
and ``sms`` channels (:mod:`hw_fhir.channels.demo_inbox`); ``trylast`` makes them
come last, so they win over the built-in email channel and any installed SMS
plugin, and nothing the demo sends leaves the machine. Otherwise it returns nothing.
"""

from __future__ import annotations

from typing import Any

from .channels.demo_inbox import demo_channels
from .hookspecs import hookimpl

__all__ = ["register_channels"]


@hookimpl(trylast=True)
def register_channels(settings: Any) -> list[Any]:
    """Return the demo inbox channels when the demo runs, else nothing."""
    if settings is None or not getattr(settings, "demo", False):
        return []
    return list(demo_channels(settings))

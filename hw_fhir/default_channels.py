"""Built-in plugin: the email and Web Push channels, and the webhook and EHR-inbox channels when configured."""

from __future__ import annotations

from typing import Any

from .channels import EmailChannel, FhirInboxChannel, WebhookChannel, WebPushChannel
from .hookspecs import hookimpl

__all__ = ["register_channels"]


@hookimpl(tryfirst=True)
def register_channels(settings: Any, store: Any) -> list[Any]:
    """Return email (always), webpush (with a store, unless ``[web_push] enabled = false``),
    plus webhook (``[webhook]``) and ehr-inbox (``[ehr_inbox]``)."""
    channels: list[Any] = [EmailChannel.from_settings(settings)]
    for optional in (WebPushChannel.from_settings(settings, store),
                     WebhookChannel.from_settings(settings), FhirInboxChannel.from_settings(settings)):
        if optional is not None:
            channels.append(optional)
    return channels

"""The grant a Subscription was created with, kept on it so notifications honour it.

A Subscription written through /fhir with a token gets the token's scopes and launch
context stamped into a server-managed extension (:data:`SUBSCRIBER_GRANT`); whatever a
client put there itself is replaced. At notification time
(:mod:`hw_fhir.sync.subscriptions`) an event is sent only if that grant may read the
resource that changed: a token with ``user/Subscription.cruds user/Patient.rs`` is not
told about a new Flag. A Subscription without the extension was written by hw-fhir
itself or through the development-only open API, and sees everything.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from .policy import AccessPolicy, Grant

__all__ = ["SUBSCRIBER_GRANT", "stamp_grant", "grant_of", "subscriber_policy"]

SUBSCRIBER_GRANT = "http://hw-fhir.org/fhir/StructureDefinition/subscriber-grant"


def stamp_grant(resource: dict[str, Any], grant: Grant) -> dict[str, Any]:
    """Return the Subscription with the grant's scopes and context as its subscriber-grant."""
    extensions = [e for e in resource.get("extension") or []
                  if not (isinstance(e, dict) and e.get("url") == SUBSCRIBER_GRANT)]
    context = {k: v for k, v in (("patient", grant.patient), ("fhirUser", grant.fhir_user)) if v}
    data: dict[str, Any] = {"scope": grant.scopes.text, "client_id": grant.client_id,
                            "context": context}
    if grant.patients is not None:  # my-patients policy: the patients reached at creation
        data["patients"] = sorted(grant.patients)
    value = orjson.dumps(data).decode()
    return {**resource, "extension": [*extensions, {"url": SUBSCRIBER_GRANT, "valueString": value}]}


def grant_of(resource: dict[str, Any]) -> str | None:
    """Return the stamped grant (JSON text) of a Subscription, or None when it has none."""
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == SUBSCRIBER_GRANT:
            return str(ext.get("valueString") or "")
    return None


def subscriber_policy(grant_json: str | None) -> AccessPolicy | None:
    """Return the access policy of a stamped grant (None: unrestricted)."""
    if grant_json is None:
        return None
    try:
        data = orjson.loads(grant_json)
        grant = Grant.from_token(str(data.get("scope", "")), str(data.get("client_id", "")),
                                 dict(data.get("context") or {}))
        if data.get("patients") is not None:
            grant = replace(grant, patients=frozenset(str(p) for p in data["patients"]))
        return AccessPolicy(grant)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        # a damaged stamp must not widen access: nothing is readable
        return AccessPolicy(Grant.from_token("", "", {}))

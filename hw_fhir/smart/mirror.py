"""Mirror the EHR's Patient and Practitioner into the local store, linked by identifier.

The local copy carries the identifier ``urn:ietf:rfc:3986|{iss}/{type}/{id}``
(the EHR record's URL), so homework points at a local resource that can be
traced back to the EHR record. When the EHR is the sandbox on this very store,
the EHR record *is* the local resource: it only gains the identifier.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from ..errors import NotFound, NotMirrored
from ..store.base import Store
from .registry import normalize_iss

__all__ = ["mirror_resource", "read_local", "ehr_identifier", "URL_IDENTIFIER_SYSTEM", "MIRRORED_ELEMENTS"]

URL_IDENTIFIER_SYSTEM = "urn:ietf:rfc:3986"

#: Elements copied from the EHR's resource, by type.
MIRRORED_ELEMENTS = {
    "Patient": ("active", "name", "telecom", "gender", "birthDate", "communication", "extension"),
    "Practitioner": ("active", "name", "telecom", "gender", "qualification"),
}


def ehr_identifier(iss: str, resource_type: str, id: str) -> dict[str, str]:
    """Return the Identifier linking a local resource to an EHR record."""
    return {"use": "secondary", "system": URL_IDENTIFIER_SYSTEM,
            "value": f"{normalize_iss(iss)}/{resource_type}/{id}"}


def _with_link(resource: dict[str, Any], link: dict[str, str]) -> dict[str, Any]:
    identifiers = [i for i in resource.get("identifier") or []
                   if not (i.get("system") == link["system"] and i.get("value") == link["value"])]
    return {**resource, "identifier": [*identifiers, link]}


def mirror_resource(store: Store, ehr_resource: dict[str, Any], *, iss: str,
                    same_store: bool = False) -> str:
    """Create or refresh the local copy of an EHR Patient/Practitioner; return the local id."""
    rtype = ehr_resource["resourceType"]
    if rtype not in MIRRORED_ELEMENTS:
        raise NotMirrored(f"{rtype} resources are not mirrored")
    link = ehr_identifier(iss, rtype, ehr_resource["id"])
    if same_store:
        current = store.read(rtype, ehr_resource["id"]).resource
        if link not in (current.get("identifier") or []):
            store.update(_with_link(current, link))
        return current["id"]
    found = store.search(rtype, [("identifier", f"{link['system']}|{link['value']}"), ("_count", "2")])
    ehr_ids = [i for i in ehr_resource.get("identifier") or []
               if isinstance(i, dict) and i.get("system") != URL_IDENTIFIER_SYSTEM]
    copied = {k: ehr_resource[k] for k in MIRRORED_ELEMENTS[rtype] if k in ehr_resource}
    if found.matches:
        current = found.matches[0].resource
        updated = _with_link({**{k: v for k, v in current.items() if k not in MIRRORED_ELEMENTS[rtype]},
                              **copied,
                              "identifier": [i for i in current.get("identifier") or []
                                             if i not in ehr_ids] + ehr_ids}, link)
        comparable = {k: v for k, v in updated.items() if k != "meta"}
        if comparable != {k: v for k, v in current.items() if k != "meta"}:
            store.update(updated)
        return current["id"]
    created = store.create(_with_link({"resourceType": rtype, **copied, "identifier": ehr_ids}, link),
                           if_none_exist=urlencode({"identifier": f"{link['system']}|{link['value']}"}))
    return created.stored.id


def read_local(store: Store, resource_type: str, id: str | None) -> dict[str, Any] | None:
    """Return a local resource, or None when there is no id or no such resource."""
    if not id:
        return None
    try:
        return store.read(resource_type, id).resource
    except NotFound:
        return None

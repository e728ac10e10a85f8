"""Writing Tasks and CarePlans as transaction Bundles: the entries and running them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from ..store.base import Store


def transact(store: Store, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run entries as one transaction Bundle; return the response entries (same order)."""
    if not entries:
        return []
    response = store.transaction(
        {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    return list(response.get("entry") or [])


def status_entry(resource: Mapping[str, Any]) -> dict[str, Any]:
    """Return a transaction entry that writes a stored resource back with If-Match."""
    data = {k: v for k, v in resource.items() if k != "meta"}
    if (resource.get("meta") or {}).get("profile"):
        data["meta"] = {"profile": list(resource["meta"]["profile"])}
    request: dict[str, Any] = {
        "method": "PUT",
        "url": f"{resource['resourceType']}/{resource['id']}",
    }
    version = (resource.get("meta") or {}).get("versionId")
    if version:
        request["ifMatch"] = f'W/"{version}"'
    return {"resource": data, "request": request}


def was_created(entry: Mapping[str, Any]) -> bool:
    """Whether a transaction response entry created its resource (201, not an existing match)."""
    return str((entry.get("response") or {}).get("status", "")).startswith("201")


def create_entry(task: Mapping[str, Any]) -> dict[str, Any]:
    """Return a conditional-create transaction entry for a Task (by its identifier)."""
    entry: dict[str, Any] = {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": dict(task),
        "request": {"method": "POST", "url": "Task"},
    }
    for ident in task.get("identifier") or []:
        entry["request"]["ifNoneExist"] = urlencode(
            [("identifier", f"{ident['system']}|{ident['value']}")]
        )
        break
    return entry

"""The EHRs hw-fhir accepts launches from: ``iss`` → client registration.

Only a registered ``iss`` is ever contacted. Registrations come from the
config file (``HW_FHIR_CONFIG``)::

    [[smart.ehr]]
    iss = "https://ehr.example.org/fhir"      # the EHR's FHIR base URL, exactly
    client_id = "hw-fhir"
    client_auth = "public"                     # public | client_secret_basic | private_key_jwt
    client_secret = ""                         # client_secret_basic only
    scope = "launch openid fhirUser offline_access user/Patient.rs user/Practitioner.rs patient/Patient.rs"
    standalone_scope = "launch/patient openid fhirUser offline_access patient/Patient.rs"
    name = "Example EHR"

With the sandbox on, the sandbox's own ``/fhir`` is registered automatically
(:data:`SANDBOX_CLIENT_ID`, a public client).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..errors import ConfigurationError

__all__ = [
    "EhrRegistration",
    "EhrRegistry",
    "CLIENT_AUTH_METHODS",
    "DEFAULT_EHR_SCOPE",
    "DEFAULT_STANDALONE_SCOPE",
    "SANDBOX_CLIENT_ID",
    "normalize_iss",
]

CLIENT_AUTH_METHODS = ("public", "client_secret_basic", "private_key_jwt")
#: EHR launch: ``user/`` scopes for a clinician, ``patient/`` ones for a patient launching from a
#: portal (the EHR grants those that fit the user; hw-fhir reads the launch patient with them).
DEFAULT_EHR_SCOPE = ("launch openid fhirUser offline_access user/Patient.rs user/Practitioner.rs "
                     "patient/Patient.rs patient/Practitioner.rs")
DEFAULT_STANDALONE_SCOPE = ("launch/patient openid fhirUser offline_access "
                            "patient/Patient.rs patient/Practitioner.rs")
SANDBOX_CLIENT_ID = "hw-fhir-app"


def normalize_iss(iss: str) -> str:
    """Return an ``iss`` without surrounding blanks or trailing slashes."""
    return (iss or "").strip().rstrip("/")


@dataclass(frozen=True)
class EhrRegistration:
    """How hw-fhir is registered with one EHR."""

    iss: str
    client_id: str
    client_auth: str = "public"
    client_secret: str = ""
    scope: str = DEFAULT_EHR_SCOPE
    standalone_scope: str = DEFAULT_STANDALONE_SCOPE
    name: str = ""

    def __post_init__(self) -> None:
        if self.client_auth not in CLIENT_AUTH_METHODS:
            raise ConfigurationError(f"smart.ehr {self.iss}: client_auth must be one of "
                                     f"{', '.join(CLIENT_AUTH_METHODS)}, not {self.client_auth!r}")
        if not self.client_id:
            raise ConfigurationError(f"smart.ehr {self.iss}: client_id is required")
        if self.client_auth == "client_secret_basic" and not self.client_secret:
            raise ConfigurationError(f"smart.ehr {self.iss}: client_secret_basic needs client_secret")

    @classmethod
    def from_config(cls, item: Mapping[str, Any]) -> "EhrRegistration":
        """Build a registration from one ``[[smart.ehr]]`` table."""
        iss = normalize_iss(str(item.get("iss", "")))
        if not iss.startswith(("https://", "http://")):
            raise ConfigurationError(f"smart.ehr: iss must be an absolute http(s) URL, not {iss!r}")
        known = {"iss", "client_id", "client_auth", "client_secret", "scope", "standalone_scope", "name"}
        unknown = set(item) - known
        if unknown:
            raise ConfigurationError(f"smart.ehr {iss}: unknown keys {', '.join(sorted(unknown))}")
        values = {k: str(v) for k, v in item.items() if k in known}
        values["iss"] = iss
        return cls(**values)


class EhrRegistry:
    """Registered EHRs by ``iss``, plus the sandbox when it runs."""

    def __init__(self, registrations: Iterable[EhrRegistration] = (), *, sandbox: bool = False) -> None:
        self._by_iss: dict[str, EhrRegistration] = {}
        self.sandbox = sandbox
        for reg in registrations:
            self.register(reg)

    @classmethod
    def from_settings(cls, settings: Any) -> "EhrRegistry":
        """Build the registry from ``settings.extra["smart"]["ehr"]`` and ``settings.sandbox``."""
        smart = (settings.extra or {}).get("smart") or {}
        items = smart.get("ehr") or []
        if isinstance(items, Mapping):
            items = [items]
        return cls((EhrRegistration.from_config(i) for i in items), sandbox=bool(settings.sandbox))

    def register(self, registration: EhrRegistration) -> None:
        """Add (or replace) a registration."""
        self._by_iss[normalize_iss(registration.iss)] = registration

    def lookup(self, iss: str, *, local_fhir_base: str | None = None) -> EhrRegistration | None:
        """Return the registration of ``iss``; the sandbox's own /fhir when it runs; else None."""
        key = normalize_iss(iss)
        found = self._by_iss.get(key)
        if found is not None:
            return found
        if self.sandbox and local_fhir_base and key == normalize_iss(local_fhir_base):
            return EhrRegistration(iss=key, client_id=SANDBOX_CLIENT_ID, name="hw-fhir sandbox EHR")
        return None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_iss.values())

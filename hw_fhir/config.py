"""Settings from ``HW_FHIR_*`` environment variables and an optional TOML config file.

Precedence: explicit overrides > environment > config file (``HW_FHIR_CONFIG``) > defaults.
Every setting is listed in :class:`Settings`; the environment variable of
``database_url`` is ``HW_FHIR_DATABASE_URL``, and so on.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigurationError
from .limits import limits

__all__ = ["Settings", "load_settings", "default_instance_path", "MAX_LINK_LIFETIME_HOURS",
           "USER_ACCESS_POLICIES", "check_user_access"]

#: The values of ``HW_FHIR_USER_ACCESS`` (who counts as a clinician's patients:
#: :mod:`hw_fhir.smart.care_team` applies them).
USER_ACCESS_POLICIES = ("practice", "my-patients")


def check_user_access(value: str) -> None:
    """Raise ConfigurationError for an unknown ``user_access`` setting."""
    if value not in USER_ACCESS_POLICIES:
        raise ConfigurationError(f"HW_FHIR_USER_ACCESS must be one of "
                                 f"{', '.join(USER_ACCESS_POLICIES)}, not {value!r}")


#: Longest lifetime a secure patient link may be given (30 days).
MAX_LINK_LIFETIME_HOURS = 720

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def default_instance_path() -> Path:
    """Return the instance folder (SQLite file, keys, export files): ``./instance``."""
    return Path(os.environ.get("HW_FHIR_INSTANCE_PATH", Path.cwd() / "instance")).resolve()


@dataclass(frozen=True)
class Settings:
    """Every setting of hw-fhir, with its default."""

    #: SQLAlchemy URL; default: SQLite file ``<instance>/hw_fhir.db``.
    database_url: str = ""
    #: Secret for sessions and signed links; generated and kept in the instance folder if unset.
    secret_key: str = ""
    #: Public base URL of the app (the /fhir endpoint is ``{base_url}/fhir``);
    #: empty: taken from each request.
    base_url: str = ""
    #: Folder for the SQLite file, keys and export files.
    instance_path: str = ""
    #: Serve /fhir without authorization (development only; refused with production=True).
    open_api: bool = False
    #: Production mode: refuses development switches.
    production: bool = False
    #: Run the sandbox EHR (demo and tests only).
    sandbox: bool = False
    #: Load demo data at start-up.
    demo: bool = False
    #: Session cookie ``Secure`` + ``SameSite=None`` (turn off only for plain-http local development).
    secure_cookies: bool = True
    #: Browser origins allowed to call /fhir, the token, introspection and revocation endpoints
    #: (CORS): ``*`` for any (refused in production), or origins separated by spaces or commas
    #: (``https://app.example.org``). Empty: any origin with the sandbox on, none otherwise.
    cors_origins: str = ""
    #: CSP ``frame-ancestors`` sources allowed to embed the app (space separated).
    frame_ancestors: str = "'self'"
    #: Comma-separated plugin names to load (empty: all installed).
    plugins: str = ""
    #: Crisis resources shown to patients when a risk is raised.
    crisis_text: str = ("If you are in crisis or thinking about harming yourself, call or text "
                        "988 (Suicide & Crisis Lifeline, US) or call 911. If you are outside the "
                        "US, call your local emergency number.")
    #: Lifetime of a secure patient link, in hours (1 to MAX_LINK_LIFETIME_HOURS). A link
    #: opens only a thank-you page once its activity is done, whatever its lifetime.
    link_lifetime_hours: int = 72
    #: The practice's IANA time zone: the first guess for a patient with no zone of their own,
    #: and the zone clinician pages show times in when the Practitioner names none.
    practice_timezone: str = "UTC"
    #: Ask for the patient's date of birth before a secure link opens.
    link_birth_date_check: bool = False
    #: Grace period after the due time before an unfinished Task becomes failed, in hours.
    overdue_grace_hours: int = 24
    #: How far ahead recurring Tasks are materialized, in days.
    materialize_horizon_days: int = 14
    #: SMTP server for the email channel.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    mail_from: str = "hw-fhir <no-reply@localhost>"
    #: Name of the practice, used in reminder texts (no clinical content).
    practice_name: str = "your care team"
    #: Egress allow-list: host names, addresses or networks (CIDR), comma or space separated,
    #: that outbound calls chosen by users (Subscription endpoints) may reach even when they are
    #: loopback/private/link-local (:mod:`hw_fhir.egress`).
    egress_allow: str = ""
    #: Header names a user may set on outbound calls (Subscription ``channel.header``).
    egress_headers: str = "Authorization"
    #: Largest accepted resource, in bytes of JSON (413 above; :mod:`hw_fhir.limits`).
    max_resource_bytes: int = 2 * 1024 * 1024
    #: Most elements in any one JSON array of a request (422 above).
    max_array_length: int = 10_000
    #: Deepest nesting of JSON objects/arrays in a request (422 above; at most 100).
    max_depth: int = 64
    #: Most search index rows one resource may create (422 above).
    max_index_rows: int = 2_000
    #: What ``user/`` scopes reach: ``practice`` (every patient) or ``my-patients`` (the patients
    #: the Practitioner cares for; :mod:`hw_fhir.smart.care_team`).
    user_access: str = "practice"
    #: Record every access to patient data as an AuditEvent (off refused in production).
    audit: bool = True
    #: Days AuditEvents are kept; older ones are deleted by the worker (0: keep forever).
    audit_retention_days: int = 2190
    #: Practice-level safety contact (``[safety]`` table: ``name``, ``channel``, ``address``): the
    #: last recipient of every risk alert's escalation path; required in production.
    safety_name: str = ""
    #: Channel that reaches the safety contact (``email``, ``sms``, a plugin's channel name).
    safety_channel: str = ""
    #: The safety contact's address on that channel (an email address, a phone number...).
    safety_address: str = ""
    #: A risk alert not delivered within this many seconds escalates to the next recipient
    #: (``[safety] escalate_after_minutes`` in the config file; default 15 minutes).
    safety_escalate_after_seconds: int = 900
    #: Extra settings from the config file (plugins read their own keys here).
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fhir_base(self) -> str | None:
        """The configured FHIR base URL of this app (None: taken from each request)."""
        return self.base_url.rstrip("/") + "/fhir" if self.base_url else None

    @property
    def cors_origin_list(self) -> list[str]:
        """The origins allowed by CORS (``["*"]`` for any; empty: CORS off)."""
        origins = self.cors_origins.replace(",", " ").split()
        if not origins and self.sandbox and not self.production:
            return ["*"]
        return ["*"] if "*" in origins else [o.rstrip("/") for o in origins]

    def check(self) -> "Settings":
        """Raise ConfigurationError for contradictory settings; return self."""
        if self.production and self.open_api:
            raise ConfigurationError("HW_FHIR_OPEN_API=1 is refused together with HW_FHIR_PRODUCTION=1")
        if self.production and self.sandbox:
            raise ConfigurationError("The sandbox EHR cannot run with HW_FHIR_PRODUCTION=1")
        if not 1 <= self.link_lifetime_hours <= MAX_LINK_LIFETIME_HOURS:
            raise ConfigurationError(
                f"HW_FHIR_LINK_LIFETIME_HOURS must be between 1 and {MAX_LINK_LIFETIME_HOURS} "
                f"(hours), not {self.link_lifetime_hours}")
        try:
            ZoneInfo(self.practice_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"HW_FHIR_PRACTICE_TIMEZONE: {self.practice_timezone!r} is not "
                                     "an IANA time zone (for example America/New_York)") from None

        limits(self)  # ConfigurationError for limits out of range

        check_user_access(self.user_access)
        if self.production and not self.audit:
            raise ConfigurationError("HW_FHIR_AUDIT=0 is refused in production")
        if self.audit_retention_days < 0:
            raise ConfigurationError("HW_FHIR_AUDIT_RETENTION_DAYS must be 0 (keep) or more")
        if self.production and not self.secure_cookies:
            raise ConfigurationError("HW_FHIR_SECURE_COOKIES=0 is refused in production")
        if self.production and not self.base_url:
            raise ConfigurationError("HW_FHIR_BASE_URL is required in production: it is the only URL the "
                                     "app names itself by (token audience, /fhir links), never the Host header")
        if self.production and "*" in self.cors_origins.replace(",", " ").split():
            raise ConfigurationError("HW_FHIR_CORS_ORIGINS=* is refused in production: list the origins "
                                     "of the browser apps allowed to call hw-fhir")
        for origin in self.cors_origins.replace(",", " ").split():
            if origin != "*" and not origin.startswith(("https://", "http://")):
                raise ConfigurationError(f"HW_FHIR_CORS_ORIGINS: {origin!r} is not an origin "
                                         "(https://host[:port]) or *")
        return self


def _coerce(name: str, kind: Any, raw: Any) -> Any:
    if kind in (bool, "bool"):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigurationError(f"HW_FHIR_{name.upper()} must be 1/0, true/false or yes/no, not {raw!r}")
    if kind in (int, "int"):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigurationError(f"HW_FHIR_{name.upper()} must be a whole number, not {raw!r}") from None
    return str(raw)


def load_settings(environ: Mapping[str, str] | None = None, *, create: bool = True,
                  **overrides: Any) -> Settings:
    """Build Settings from the config file, the environment and explicit overrides.

    ``create=False`` writes nothing: the instance folder and the generated secret key
    are not created (``secret_key`` stays empty when it is not set), for checks that
    must leave no trace.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    config_file = env.get("HW_FHIR_CONFIG")
    known = {f.name: f.type for f in fields(Settings) if f.name != "extra"}
    if config_file:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"Cannot read config file {config_file}: {exc}") from None
        data = _flatten_safety(data)
        for key, value in data.items():
            if key in known:
                values[key] = _coerce(key, known[key], value)
            else:
                extra[key] = value
    for name, kind in known.items():
        raw = env.get(f"HW_FHIR_{name.upper()}")
        if raw is not None:
            values[name] = _coerce(name, kind, raw)
    for name, value in overrides.items():
        if name == "extra":
            extra.update(value or {})
        elif name in known:
            values[name] = value
        else:
            raise ConfigurationError(f"Unknown setting {name!r}")
    return _fill_defaults(Settings(**values, extra=extra), create=create).check()


def _flatten_safety(data: dict[str, Any]) -> dict[str, Any]:
    """Turn the ``[safety]`` table into ``safety_*`` settings (minutes become seconds)."""
    table = data.get("safety")
    if table is None:
        return data
    if not isinstance(table, dict):
        raise ConfigurationError("[safety] must be a table with name, channel and address")
    out = {k: v for k, v in data.items() if k != "safety"}
    for key, value in table.items():
        if key == "escalate_after_minutes":
            try:
                out["safety_escalate_after_seconds"] = int(float(value) * 60)
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"[safety] escalate_after_minutes must be a number, not {value!r}") from None
        elif key in ("name", "channel", "address", "escalate_after_seconds"):
            out[f"safety_{key}"] = value
        else:
            raise ConfigurationError(f"[safety] has no setting {key!r} (name, channel, address, "
                                     "escalate_after_minutes)")
    return out


def _fill_defaults(s: Settings, *, create: bool = True) -> Settings:
    instance = Path(s.instance_path) if s.instance_path else default_instance_path()
    changes: dict[str, Any] = {"instance_path": str(instance)}
    if not s.database_url:
        if create:
            instance.mkdir(parents=True, exist_ok=True)
        changes["database_url"] = f"sqlite:///{instance / 'hw_fhir.db'}"
    if not s.secret_key and create:
        instance.mkdir(parents=True, exist_ok=True)
        key_file = instance / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        changes["secret_key"] = key_file.read_text().strip()
    return replace(s, **changes)

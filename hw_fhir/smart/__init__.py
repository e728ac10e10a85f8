"""SMART on FHIR without a web framework: scopes, access decisions, launches, tokens.

* :mod:`.scopes` parses v1 and v2 scopes (granular ``?param=value`` filters too);
* :mod:`.policy` and :mod:`.guard` decide and enforce what a token may do on /fhir;
* :mod:`.compartment` defines the patient compartment and filter matching;
* :mod:`.registry`, :mod:`.client`, :mod:`.launcher` run hw-fhir's side of a launch;
* :mod:`.sessions` and :mod:`.authstore` keep sessions, launches, codes and tokens
  in the store's database (tables in :mod:`.tables`);
* :mod:`.discovery` builds the SMART and OpenID discovery documents of hw-fhir's
  authorization server; :mod:`.token_endpoints` adds introspection (RFC 7662),
  revocation (RFC 7009) and public-client refresh to it (authlib);
* :mod:`.keys` keeps signing keys in the instance folder; :mod:`.mirror` copies the
  EHR's Patient/Practitioner into the local store.
"""

from __future__ import annotations

from .authstore import AuthStore, TokenRecord, hash_secret
from .client import SmartConfiguration, TokenResponse, discover, verify_id_token
from .guard import GuardedStore
from .launcher import Launcher
from .mirror import ehr_identifier, mirror_resource
from .policy import AccessPolicy, Grant, bearer_challenge
from .registry import SANDBOX_CLIENT_ID, EhrRegistration, EhrRegistry
from .scopes import Scope, ScopeSet, grantable_scopes, parse_scope
from .sessions import Launch, LaunchContext, LaunchStore, LaunchTokens, WebSessionStore

__all__ = [
    "AccessPolicy",
    "AuthStore",
    "EhrRegistration",
    "EhrRegistry",
    "Grant",
    "GuardedStore",
    "Launch",
    "LaunchContext",
    "LaunchStore",
    "LaunchTokens",
    "Launcher",
    "SANDBOX_CLIENT_ID",
    "Scope",
    "ScopeSet",
    "SmartConfiguration",
    "TokenRecord",
    "TokenResponse",
    "WebSessionStore",
    "bearer_challenge",
    "discover",
    "ehr_identifier",
    "grantable_scopes",
    "hash_secret",
    "mirror_resource",
    "parse_scope",
    "verify_id_token",
]

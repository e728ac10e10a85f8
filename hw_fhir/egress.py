"""The egress policy: every outbound HTTP call hw-fhir makes on someone's behalf goes through it.

Who chooses the address decides how much it is trusted:

* **Addresses a user chose** (a Subscription's ``channel.endpoint`` and
  ``channel.header``): checked in full. The scheme is ``https`` (``http`` too outside
  production); the host name is resolved and every address it resolves to must be a
  public one — loopback, private, link-local, multicast, reserved and unspecified
  addresses are refused unless the host or address is on the allow-list
  (``HW_FHIR_EGRESS_ALLOW``); only header names on ``HW_FHIR_EGRESS_HEADERS`` may be set.
* **Addresses the operator configured** (the ``[webhook]`` url, ``[[smart.ehr]]`` iss,
  ``[[smart.backend_clients]]`` ``jwks_url``, ``[[ehr]]`` write-back base URLs): their
  hosts are allow-listed by being configured (:meth:`EgressPolicy.trusting`); the
  scheme rule still applies.

Redirects are never followed (an allowed endpoint could otherwise point anywhere).
A refusal raises :class:`~hw_fhir.errors.EgressRefused` before any connection is made.

Limitation: the name is resolved for the check and again by the HTTP client; a DNS
server that answers differently within that moment (rebinding) is not caught here.
Put the allow-list's private networks behind a firewall as well.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field, replace
from typing import Any, Iterable
from urllib.parse import urlsplit

import requests

from .errors import EgressRefused

__all__ = ["EgressPolicy", "egress_policy", "FORBIDDEN_HEADERS"]

#: Header names a user may never set, whatever the allow-list says (they steer routing,
#: framing or identity of the request itself).
FORBIDDEN_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "content-type", "cookie",
    "proxy-authorization", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "forwarded",
    "te", "upgrade", "expect",
})

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _split(value: str) -> list[str]:
    return [part for part in value.replace(",", " ").split() if part]


@dataclass(frozen=True)
class EgressPolicy:
    """Where outbound calls may go; build it with :func:`egress_policy`."""

    #: refuse plain http
    https_only: bool = False
    #: host names (lower case) that may be reached whatever they resolve to
    hosts: frozenset[str] = frozenset()
    #: networks whose addresses may be reached even when they are not public
    networks: tuple[_Network, ...] = ()
    #: header names (lower case) a user may set on an outbound request
    headers: frozenset[str] = frozenset({"authorization"})
    #: resolves a host name to its addresses (the system resolver by default)
    resolve: Any = field(default=None, compare=False)

    def trusting(self, *urls: str | None) -> "EgressPolicy":
        """Return this policy with the hosts of operator-configured URLs allow-listed."""
        extra = {(urlsplit(u).hostname or "").lower() for u in urls if u}
        return replace(self, hosts=self.hosts | (extra - {""}))

    def _allowed_address(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.networks):
            return True
        return ip.is_global and not ip.is_multicast

    def _addresses(self, host: str, port: int) -> list[str]:
        if self.resolve is not None:
            return list(self.resolve(host, port))
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError):
            raise EgressRefused(f"The host {host!r} cannot be resolved") from None
        return [str(info[4][0]) for info in infos]

    def check_url(self, url: str) -> None:
        """Raise EgressRefused unless ``url`` may be called."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise EgressRefused(f"{url!r} is not a valid URL") from None
        schemes = ("https",) if self.https_only else ("https", "http")
        if parts.scheme not in schemes or not parts.hostname:
            raise EgressRefused(f"Outbound calls must use an absolute {' or '.join(schemes)} "
                                f"URL, not {url[:200]!r}")
        if parts.username or parts.password:
            raise EgressRefused("Outbound URLs may not carry credentials")
        host = parts.hostname.lower()
        if host in self.hosts:
            return
        addresses = self._addresses(host, port)
        if not addresses:
            raise EgressRefused(f"The host {host!r} cannot be resolved")
        for address in addresses:
            if not self._allowed_address(address):
                raise EgressRefused(f"{host} resolves to {address}, a non-public address that is "
                                    "not on the egress allow-list (HW_FHIR_EGRESS_ALLOW)")

    def check_headers(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Return the headers, or raise EgressRefused naming one a user may not set."""
        out = []
        for name, value in headers:
            key = name.strip().lower()
            if key in FORBIDDEN_HEADERS or key not in self.headers:
                allowed = ", ".join(sorted(self.headers - FORBIDDEN_HEADERS)) or "none"
                raise EgressRefused(f"The header {name.strip()!r} may not be set on outbound "
                                    f"requests (allowed: {allowed}; HW_FHIR_EGRESS_HEADERS)")
            if "\r" in value or "\n" in value:
                raise EgressRefused(f"The header {name.strip()!r} has a line break in its value")
            out.append((name.strip(), value))
        return out

    def request(self, method: str, url: str, *, session: Any = None,
                **kwargs: Any) -> requests.Response:
        """Check ``url``, then send the request without following redirects."""
        self.check_url(url)
        kwargs["allow_redirects"] = False
        return (session or requests).request(method, url, **kwargs)


def _parse_allow(value: str) -> tuple[frozenset[str], tuple[_Network, ...]]:
    hosts: set[str] = set()
    networks: list[_Network] = []
    for entry in _split(value):
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(entry.lower())
    return frozenset(hosts), tuple(networks)


def egress_policy(settings: Any) -> EgressPolicy:
    """Return the egress policy of these settings (``egress_allow``, ``egress_headers``)."""
    hosts, networks = _parse_allow(getattr(settings, "egress_allow", "") or "")
    names = frozenset(h.lower() for h in _split(getattr(settings, "egress_headers", "") or ""))
    return EgressPolicy(https_only=bool(getattr(settings, "production", False)), hosts=hosts,
                        networks=networks, headers=names)

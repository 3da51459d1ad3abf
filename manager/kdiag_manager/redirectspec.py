"""A redirect's spec, validated: what the Redirect call's first message asks for."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .iptables import SESSION_RE
from .wire.api.v1 import manager_pb2 as pb

DEFAULT_FAIL_OPEN_TIMEOUT = 3.0


class SpecError(ValueError):
    """The redirect spec is invalid (INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class RedirectOptions:
    """A validated RedirectSpec."""

    incoming: bool
    ports: tuple[int, ...]
    session: str
    destination: str | None = None
    fail_open: bool = False
    fail_open_timeout: float = DEFAULT_FAIL_OPEN_TIMEOUT
    header: tuple[str, str] | None = None
    skip_sources: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Incoming: connections from these sources are not redirected (the kubelet's probes)."""
    mirror: bool = False
    """Incoming: the app still serves every connection; copies go to the operator."""

    @classmethod
    def from_spec(cls, spec: pb.RedirectSpec, default_session: str) -> RedirectOptions:
        """Validate ``spec``; raise SpecError with a readable message."""
        if spec.direction not in (pb.INCOMING, pb.OUTGOING):
            raise SpecError("direction must be INCOMING or OUTGOING")
        ports = tuple(dict.fromkeys(spec.ports))
        if not ports or any(not 0 < p < 65536 for p in ports):
            raise SpecError("ports must be 1..65535 (at least one)")
        if spec.destination and spec.direction != pb.OUTGOING:
            raise SpecError("destination applies to outgoing redirects only")
        session = spec.session or default_session
        if not SESSION_RE.match(session):
            raise SpecError(f"invalid session id {session!r}")
        header = None
        if spec.HasField("header_filter") and spec.header_filter.name:
            header = (spec.header_filter.name, spec.header_filter.value)
        timeout = spec.fail_open_timeout_seconds or DEFAULT_FAIL_OPEN_TIMEOUT
        if spec.skip_sources and spec.direction != pb.INCOMING:
            raise SpecError("skip_sources applies to incoming redirects only")
        if spec.mirror and spec.direction != pb.INCOMING:
            raise SpecError("mirror applies to incoming redirects only")
        return cls(spec.direction == pb.INCOMING, ports, session, spec.destination or None,
                   spec.fail_open, timeout, header, _networks(spec.skip_sources), spec.mirror)


MAX_SKIP_SOURCES = 16


def _networks(texts: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``skip_sources`` as networks (an address is a /32 or /128); SpecError if one is not."""
    if len(texts) > MAX_SKIP_SOURCES:
        raise SpecError(f"skip_sources: at most {MAX_SKIP_SOURCES} sources")
    found: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for text in texts:
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise SpecError(f"skip_sources: {text!r} is not an IP address or network") from None
        if network not in found:
            found.append(network)
    return tuple(found)

"""`--remote ENDPOINT SYSTEMS N`: where a master's remote workers are and what they own."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


TOKEN_ENV = "EVIX_REMOTE_TOKEN"
"""The shared token of remote worker services, for `evix worker` and for masters."""


class EndpointError(ValueError):
    """An endpoint or systems list that cannot be used (the message says why)."""


@dataclass(frozen=True)
class Remote:
    """`--remote ENDPOINT SYSTEMS N`: N connections to ENDPOINT, each a worker that owns SYSTEMS."""

    endpoint: str
    systems: tuple[str, ...] = ()  # empty: any system
    connections: int = 1

    @property
    def owns(self) -> frozenset[str] | None:
        """The systems its workers own (None: any)."""
        return frozenset(self.systems) if self.systems else None

    def to_json(self) -> dict[str, object]:
        return {"endpoint": self.endpoint, "systems": list(self.systems), "connections": self.connections}


def split_endpoint(endpoint: str, *, listen: bool = False) -> tuple[str, int]:
    """`HOST:PORT`, `[IPV6]:PORT` -> (host, port); EndpointError naming what is wrong. An
    address to `listen` on may have port 0 (any free port)."""
    host, sep, port_text = endpoint.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not (0 if listen else 1) <= int(port_text) < 65536:
        raise EndpointError(f"remote endpoint {endpoint!r}: expected HOST:PORT (an IPv6 address as [ADDR]:PORT)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise EndpointError(f"remote endpoint {endpoint!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise EndpointError(f"remote endpoint {endpoint!r}: write an IPv6 address in brackets, [ADDR]:PORT")
    return host, int(port_text)


def parse_systems(text: str) -> tuple[str, ...]:
    """`x86_64-linux,aarch64-linux` -> its systems; "" -> () (any system)."""
    return tuple(s for s in (part.strip() for part in text.split(",")) if s)


def remote_from_json(field: str, value: object) -> Remote:
    """One `remotes[i]` object of a config's JSON; EndpointError naming the field."""
    if not isinstance(value, dict) or set(value) - {"endpoint", "systems", "connections"}:
        raise EndpointError(f"{field} must be an object with endpoint, systems and connections")
    endpoint, systems, connections = value.get("endpoint"), value.get("systems", []), value.get("connections", 1)
    if not isinstance(endpoint, str):
        raise EndpointError(f"{field}.endpoint must be a string HOST:PORT")
    if not isinstance(systems, list) or not all(isinstance(s, str) for s in systems):
        raise EndpointError(f"{field}.systems must be an array of strings")
    if not isinstance(connections, int) or isinstance(connections, bool) or connections < 1:
        raise EndpointError(f"{field}.connections must be an integer of at least 1")
    split_endpoint(endpoint)
    return Remote(endpoint, tuple(systems), connections)

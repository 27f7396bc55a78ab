"""The client's address behind trusted proxies (``X-Forwarded-For`` / ``Forwarded``).

A forwarding header is believed only when the direct peer (the TCP connection's other
end) is a configured trusted proxy; from anyone else it is ignored, so a caller cannot
pick the address that rate limits and brute-force limits key on. From a trusted peer the
chain is walked from the right (the hop our own proxy added) past every trusted address;
the first untrusted address is the client. A malformed or obfuscated entry (``unknown``,
``_hidden``, garbage) ends the walk at the last address a trusted proxy vouched for; when
every hop is trusted the farthest one is the client.

Which header: ``X-Forwarded-For`` (what nginx, HAProxy, Envoy, Traefik, Caddy and cloud
load balancers maintain) when the trusted proxy sent one, else the ``for=`` parameters of
RFC 7239 ``Forwarded``. A trusted proxy that writes only ``Forwarded`` must therefore
drop an incoming ``X-Forwarded-For``.

Parse the trust list once (:meth:`TrustedProxies.parse`, or the :data:`NetworkList`
settings type); :meth:`TrustedProxies.trusts_peer` caches its answer per peer string, so
the per-request cost is a dictionary look-up (used by the gateway's hot path).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# One element of a ``Forwarded`` list: commas inside quoted strings do not split it.
_ELEMENT = re.compile(r'(?:[^,"]|"(?:\\.|[^"\\])*")+')
_FOR = re.compile(r'(?:^|;)\s*for\s*=\s*("(?:\\.|[^"\\])*"|[^;\s]*)', re.IGNORECASE)
_PEER_CACHE_SIZE = 4096


def parse_networks(raw: str | Iterable[Any] | None) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs or addresses (``"10.0.0.0/8, ::1"``) as networks.

    Host bits are allowed (``10.0.0.1/8`` means ``10.0.0.0/8``); an iterable of strings or
    networks is accepted too. Raises ``ValueError`` naming a bad entry.
    """
    items: Iterable[Any] = (raw or "").split(",") if isinstance(raw, str) or raw is None \
        else raw
    networks: list[IPNetwork] = []
    for item in items:
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(item)
            continue
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or CIDR network") from None
    return tuple(networks)


# A settings field holding a trust list: ``Annotated`` so pydantic-settings does not try
# to decode the variable as JSON and the error names the variable (``ComponentSettings``).
NetworkList = Annotated[tuple[IPNetwork, ...], NoDecode, BeforeValidator(parse_networks)]


def parse_address(value: str | None) -> IPAddress | None:
    """An address from a header entry or peer: ``1.2.3.4``, ``1.2.3.4:80``, ``::1``,
    ``[::1]`` or ``[::1]:80``; ``None`` when it is none of these."""
    text = (value or "").strip()
    if not text:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not text[end + 1:].startswith(":")):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def forwarded_for(value: str | None) -> list[str]:
    """The ``for=`` values of an RFC 7239 ``Forwarded`` header, left to right (quotes
    removed; an element without ``for=`` gives ``""``, which ends a walk)."""
    found: list[str] = []
    for element in _ELEMENT.findall(value or ""):
        match = _FOR.search(element.strip())
        node = match.group(1) if match else ""
        if node.startswith('"'):
            node = node[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        found.append(node)
    return found


class TrustedProxies:
    """A parsed trust list (see the module docstring). Falsy when empty."""

    __slots__ = ("_peers", "networks")

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(networks)
        self._peers: dict[str, bool] = {}

    @classmethod
    def parse(cls, raw: str | Iterable[Any] | None) -> TrustedProxies:
        """From comma-separated CIDRs (``ValueError`` if one is bad)."""
        return cls(parse_networks(raw))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({', '.join(str(n) for n in self.networks)})"

    def trusts(self, address: IPAddress) -> bool:
        """True when ``address`` (or the IPv4 address an IPv6 one maps) is trusted."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def trusts_peer(self, peer: str | None) -> bool:
        """Whether the direct peer ``peer`` is a trusted proxy (cached per string)."""
        if not peer or not self.networks:
            return False
        known = self._peers.get(peer)
        if known is None:
            address = parse_address(peer)
            known = address is not None and self.trusts(address)
            if len(self._peers) >= _PEER_CACHE_SIZE:
                self._peers.clear()  # bounded: untrusted peers are many and varied
            self._peers[peer] = known
        return known

    def client(self, peer: str | None, x_forwarded_for: str | None = None,
               forwarded: str | None = None) -> str:
        """The client's address for a request from ``peer`` carrying these headers
        (each header's lines joined with ``", "``)."""
        if not peer:
            return "unknown"
        if not self.trusts_peer(peer):
            return peer
        if x_forwarded_for and x_forwarded_for.strip():
            chain = x_forwarded_for.split(",")
        elif forwarded and forwarded.strip():
            chain = forwarded_for(forwarded)
        else:
            return _canonical(peer)
        nearest = _canonical(peer)
        for hop in reversed(chain):
            address = parse_address(hop)
            if address is None:
                break
            nearest = str(address)
            if not self.trusts(address):
                break
        return nearest


def _canonical(peer: str) -> str:
    address = parse_address(peer)
    return str(address) if address is not None else peer


def client_address(peer: str | None, x_forwarded_for: str | None = None,
                   forwarded: str | None = None,
                   trusted: TrustedProxies | Iterable[IPNetwork] = ()) -> str:
    """One-off form of :meth:`TrustedProxies.client` (parse the list once in servers)."""
    proxies = trusted if isinstance(trusted, TrustedProxies) else TrustedProxies(trusted)
    return proxies.client(peer, x_forwarded_for, forwarded)

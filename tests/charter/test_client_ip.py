"""The client address behind trusted proxies (charter.security.client_ip): forwarding
headers only from a trusted peer, walked from the right past trusted hops."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic_settings import BaseSettings

from charter.security.client_ip import (
    NetworkList,
    TrustedProxies,
    client_address,
    forwarded_for,
    parse_address,
    parse_networks,
)

PROXIES = TrustedProxies.parse("10.0.0.0/24, 2001:db8:ffff::/48")


@pytest.mark.parametrize(("peer", "xff", "expected"), [
    ("192.0.2.1", "198.51.100.1", "192.0.2.1"),             # untrusted peer: header ignored
    ("192.0.2.1", "10.0.0.9", "192.0.2.1"),                 # ... even naming a proxy
    ("10.0.0.1", None, "10.0.0.1"),                         # trusted proxy, no header
    ("10.0.0.1", "", "10.0.0.1"),
    ("10.0.0.1", "198.51.100.1", "198.51.100.1"),
    ("10.0.0.1", "6.6.6.6, 198.51.100.1, 10.0.0.2", "198.51.100.1"),  # spoofed left part
    ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),         # all trusted: the farthest
    ("10.0.0.1", "198.51.100.1, garbage", "10.0.0.1"),      # malformed: stop at the proxy
    ("10.0.0.1", "garbage, 198.51.100.1", "198.51.100.1"),  # malformed beyond the client
    ("10.0.0.1", "198.51.100.1:5000", "198.51.100.1"),      # a port is dropped
    ("10.0.0.1", " 198.51.100.1 ,10.0.0.2 ", "198.51.100.1"),
    ("not-an-ip", "198.51.100.1", "not-an-ip"),
    (None, "198.51.100.1", "unknown"),
    # IPv6
    ("2001:db8:ffff::1", "2001:db8::7", "2001:db8::7"),
    ("2001:db8:ffff::1", "[2001:db8::7]:443, 2001:db8:ffff::2", "2001:db8::7"),
    ("2001:db8::99", "198.51.100.1", "2001:db8::99"),       # untrusted v6 peer
    ("::ffff:10.0.0.1", "198.51.100.1", "198.51.100.1"),    # v4-mapped proxy (dual stack)
    ("10.0.0.1", "2001:DB8:0::7", "2001:db8::7"),           # canonical form
])
def test_x_forwarded_for(peer: str | None, xff: str | None, expected: str) -> None:
    assert PROXIES.client(peer, xff) == expected


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("10.0.0.1", "for=198.51.100.1", "198.51.100.1"),
    ("10.0.0.1", "for=6.6.6.6, for=198.51.100.1;proto=https, for=10.0.0.2;by=10.0.0.1",
     "198.51.100.1"),
    ("10.0.0.1", 'For="[2001:db8::7]:4711";proto=http', "2001:db8::7"),
    ("10.0.0.1", 'for="198.51.100.1:80";host="a,b"', "198.51.100.1"),  # comma in a quote
    ("10.0.0.1", "for=198.51.100.1, for=unknown", "10.0.0.1"),   # obfuscated: stop
    ("10.0.0.1", "for=198.51.100.1, proto=https", "10.0.0.1"),   # element without for=
    ("192.0.2.1", "for=198.51.100.1", "192.0.2.1"),              # untrusted peer
])
def test_forwarded(peer: str, forwarded: str, expected: str) -> None:
    assert PROXIES.client(peer, None, forwarded) == expected


def test_x_forwarded_for_wins_over_forwarded() -> None:
    assert PROXIES.client("10.0.0.1", "198.51.100.1", "for=203.0.113.9") == "198.51.100.1"
    assert PROXIES.client("10.0.0.1", " ", "for=203.0.113.9") == "203.0.113.9"


def test_no_trusted_proxy_means_the_peer() -> None:
    nobody = TrustedProxies()
    assert not nobody
    assert nobody.client("127.0.0.1", "198.51.100.1", "for=198.51.100.2") == "127.0.0.1"
    assert client_address("127.0.0.1", "198.51.100.1") == "127.0.0.1"
    assert client_address("127.0.0.1", "198.51.100.1",
                          trusted=parse_networks("127.0.0.1")) == "198.51.100.1"


def test_peer_answers_are_cached_and_bounded() -> None:
    proxies = TrustedProxies.parse("10.0.0.0/8")
    assert proxies.trusts_peer("10.1.2.3") and not proxies.trusts_peer("192.0.2.1")
    assert not proxies.trusts_peer("") and not proxies.trusts_peer(None)
    for i in range(10_000):
        proxies.trusts_peer(f"192.0.{i // 256}.{i % 256}")
    assert len(proxies._peers) <= 4096
    assert proxies.trusts_peer("10.1.2.3")


def test_parse_networks() -> None:
    assert parse_networks(None) == () == parse_networks(" , ")
    assert parse_networks("10.0.0.1/8, ::1") == (ipaddress.ip_network("10.0.0.0/8"),
                                                 ipaddress.ip_network("::1/128"))
    assert parse_networks(["192.0.2.0/24", ipaddress.ip_network("::/0")]) == (
        ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("::/0"))
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        parse_networks("10.0.0.0/8, 10.0.0.300")


@pytest.mark.parametrize(("text", "expected"), [
    ("1.2.3.4", "1.2.3.4"), ("1.2.3.4:80", "1.2.3.4"), ("::1", "::1"), ("[::1]", "::1"),
    ("[::1]:80", "::1"), ("[::1]x", None), ("[::1", None), ("unknown", None),
    ("_hidden", None), ("", None), (None, None), ("1.2.3.4:80:90", None),
])
def test_parse_address(text: str | None, expected: str | None) -> None:
    address = parse_address(text)
    assert (str(address) if address is not None else None) == expected


def test_forwarded_for_values() -> None:
    assert forwarded_for('for=a, for="[::1]:1";by=b, proto=http') == ["a", "[::1]:1", ""]
    assert forwarded_for(None) == []


class _Settings(BaseSettings):
    trusted: NetworkList = ()


def test_settings_type_reads_comma_separated_cidrs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _Settings().trusted == ()
    monkeypatch.setenv("TRUSTED", "10.0.0.0/8,2001:db8::/32")
    assert _Settings().trusted == (ipaddress.ip_network("10.0.0.0/8"),
                                   ipaddress.ip_network("2001:db8::/32"))
    monkeypatch.setenv("TRUSTED", "10.0.0.0/33")
    with pytest.raises(ValueError, match="not an IP address or CIDR network"):
        _Settings()

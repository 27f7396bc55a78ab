"""Where the instances of each upstream service are: a static list of URLs, or DNS.

Per service (``<SERVICE>`` is the API name upper-cased, ``-`` → ``_``):

* ``<SERVICE>_URLS`` — comma-separated base URLs, one per instance (``charter up
  --replicas`` sets it); else ``<SERVICE>_URL`` / ``charter.config.service_url(api)``,
  one instance, as before;
* ``<SERVICE>_DISCOVERY`` — ``static`` (the URLs are the instances) or ``dns``: each URL's
  host name is resolved to ALL its A/AAAA records, one instance per address, and
  re-resolved every ``GATEWAY_DNS_REFRESH`` seconds (compose ``--scale``, a Kubernetes
  headless Service). The default for every service is ``GATEWAY_DISCOVERY``;
* ``<SERVICE>_DISCOVERY_HOST`` — with ``dns``, the name resolved instead of the URL's host
  (Kubernetes: the headless ``<service>-instances`` Service), the URL's host staying the
  ``Host`` and TLS name.

With DNS the gateway connects to the address but keeps the name: ``Host`` is the URL's
``host:port`` and, for ``https``, the TLS server name (SNI and certificate check) is the
host name, the name the service's certificate is issued for (docs/gateway.md, *Load
balancing and failover*).
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from charter import config

DISCOVERY_MODES = ("static", "dns")

# host -> its addresses (sync or async): the system resolver unless a test injects one.
Resolver = Callable[[str], Awaitable[Sequence[str]] | Sequence[str]]


def env_prefix(api: str) -> str:
    """``catalog`` → ``CATALOG``, ``my-api`` → ``MY_API``."""
    return api.upper().replace("-", "_")


def default_url(api: str) -> str | None:
    """``service_url(api)`` for known services, else ``<API>_URL`` if set."""
    try:
        return config.service_url(api)
    except KeyError:  # not a platform service (no default port)
        url = config.env(f"{env_prefix(api)}_URL")
        return url.rstrip("/") if url else None


def configured_urls(api: str) -> tuple[str, ...]:
    """The instance base URLs of ``api`` from the environment (may be empty)."""
    listed = config.env(f"{env_prefix(api)}_URLS")
    if listed:
        urls = tuple(u.strip().rstrip("/") for u in listed.split(",") if u.strip())
        if urls:
            return urls
    url = default_url(api)
    return (url,) if url else ()


def discovery_mode(api: str, default: str = "static") -> str:
    """``static`` or ``dns`` for ``api`` (``<API>_DISCOVERY``, else ``default``).

    Raises :class:`charter.config.ConfigError` for any other value (fails closed).
    """
    name = f"{env_prefix(api)}_DISCOVERY"
    mode = (config.env(name) or default).strip().lower()
    if mode not in DISCOVERY_MODES:
        raise config.ConfigError(f"{name} must be one of {', '.join(DISCOVERY_MODES)}, "
                                 f"not {mode!r}")
    return mode


@dataclass(frozen=True)
class Endpoint:
    """One instance's address: ``key`` (``host:port``, its metrics label), ``base`` (the
    URL connected to), and with DNS the ``host`` header value and TLS ``sni`` name."""

    key: str
    base: str
    host: bytes | None = None
    sni: str | None = None


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise config.ConfigError(f"upstream URL {url!r} is not an http(s) URL with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


def static_endpoint(url: str) -> Endpoint:
    """The instance at ``url`` itself (connected to by name, as configured)."""
    _scheme, host, port, _path = _split(url)
    return Endpoint(_authority(host, port), url.rstrip("/"))


def resolved_endpoints(url: str, addresses: Sequence[str]) -> list[Endpoint]:
    """One instance per address of ``url``'s host, keeping the name for ``Host``/SNI."""
    scheme, host, port, path = _split(url)
    header = _authority(host, port).encode("idna")
    sni = host if scheme == "https" and not _is_ip(host) else None
    return [Endpoint(_authority(a, port), f"{scheme}://{_authority(a, port)}{path}",
                     header, sni) for a in addresses]


def dns_host(url: str, api: str | None = None) -> str:
    """What DNS discovery resolves for ``url``: ``<API>_DISCOVERY_HOST`` when set (a
    Kubernetes headless Service beside the ClusterIP one, whose name stays the ``Host``
    and TLS name), else the URL's host name."""
    override = config.env(f"{env_prefix(api)}_DISCOVERY_HOST") if api else None
    return override.strip() if override and override.strip() else _split(url)[1]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def system_resolve(host: str) -> list[str]:
    """Every A/AAAA address of ``host`` (``loop.getaddrinfo``), once each, in order."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, None, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


async def resolve(resolver: Resolver, host: str) -> list[str]:
    """``resolver(host)`` awaited if it is a coroutine; duplicates dropped."""
    answer = resolver(host)
    if inspect.isawaitable(answer):
        answer = await answer
    return list(dict.fromkeys(str(a) for a in answer))

"""Serving a service with mutual TLS under uvicorn.

uvicorn terminates TLS itself (``--ssl-keyfile/--ssl-certfile/--ssl-ca-certs`` and
``--ssl-cert-reqs 2`` = ``CERT_REQUIRED``: a client without a certificate signed by the
platform CA is refused at the handshake), but it does not hand the peer certificate to the
application. :class:`MTLSHttpToolsProtocol` and :class:`MTLSH11Protocol` are uvicorn's two
HTTP/1.1 protocols with one addition: when a connection is made (after the handshake) they
read the verified peer certificate from the transport's ``ssl_object`` and put the ASGI TLS
extension — with the certificate's common name as ``client_cert_identity`` — into the scope
of every request on that connection. uvicorn selects them with ``--http module:Class``.

``charter up`` starts a service as::

    python -m uvicorn --factory services.catalog.app:create_asgi --host 127.0.0.1 \\
        --port 8101 ... $(uvicorn_keepalive_args) $(uvicorn_tls_args("catalog"))

with ``service_env("catalog")`` added to its environment.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from charter import config
from charter.security import mtls

PROTOCOL = "charter.serve:MTLSHttpToolsProtocol"
H11_PROTOCOL = "charter.serve:MTLSH11Protocol"


def _attach_tls(protocol: H11Protocol | HttpToolsProtocol, transport: asyncio.Transport) -> None:
    info = mtls.tls_extension_from_ssl_object(transport.get_extra_info("ssl_object"))
    if info is not None:
        protocol.app = mtls.TLSScopeApp(protocol.app, info)


class MTLSHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol + the peer certificate in ``scope["extensions"]["tls"]``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _attach_tls(self, transport)


class MTLSH11Protocol(H11Protocol):
    """uvicorn's h11 protocol + the peer certificate in ``scope["extensions"]["tls"]``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _attach_tls(self, transport)


def uvicorn_tls_args(service: str, directory: Path | None = None,
                     protocol: str = PROTOCOL) -> list[str]:
    """uvicorn command-line options that serve ``service`` with mutual TLS.

    ``[]`` when the service does not use mTLS (``CHARTER_MTLS=0``, or auth/gateway), so
    a runner can append the result for every component. Raises
    :class:`charter.config.ConfigError` when the certificate files are missing.
    """
    if not config.uses_mtls(service):
        return []
    files = mtls.require_credentials(service, directory)
    return [
        "--ssl-keyfile", str(files.key),
        "--ssl-certfile", str(files.cert),
        "--ssl-ca-certs", str(files.ca),
        "--ssl-cert-reqs", str(int(ssl.CERT_REQUIRED)),
        "--http", protocol,
    ]


# Seconds uvicorn keeps an idle client connection open (``--timeout-keep-alive``; its
# default is 5). A client must drop an idle pooled connection *before* the server closes
# it, or a request sent just as the server closes it fails (a 502 at the gateway). Longer
# than every platform client keeps one idle: the gateway's
# GATEWAY_UPSTREAM_KEEPALIVE_EXPIRY (4 s) and httpx's default (5 s, charter.http).
KEEP_ALIVE = 15


def uvicorn_keepalive_args() -> list[str]:
    """``--timeout-keep-alive`` :data:`KEEP_ALIVE` (every component ``charter up`` starts)."""
    return ["--timeout-keep-alive", str(KEEP_ALIVE)]


def uvicorn_keepalive_config() -> dict[str, Any]:
    """The same as keyword arguments of ``uvicorn.Config`` (in-process servers)."""
    return {"timeout_keep_alive": KEEP_ALIVE}


# Components that find the client address themselves (``charter.security.client_ip``),
# trusting forwarding headers only from their own configured proxies
# (``AUTH_TRUSTED_PROXIES``, ``GATEWAY_TRUSTED_PROXIES``). uvicorn's default
# (``--proxy-headers``, ``--forwarded-allow-ips 127.0.0.1``, or ``FORWARDED_ALLOW_IPS``)
# would rewrite the peer from ``X-Forwarded-For`` before they see it, so any local client
# could pick its own address (and rate-limit bucket).
OWN_PROXY_HANDLING = frozenset({"auth", "gateway"})


def uvicorn_proxy_args(service: str) -> list[str]:
    """uvicorn options about proxy headers: ``--no-proxy-headers`` for
    :data:`OWN_PROXY_HANDLING` components, else ``[]`` (uvicorn's default)."""
    return ["--no-proxy-headers"] if service in OWN_PROXY_HANDLING else []


def uvicorn_proxy_config(service: str) -> dict[str, Any]:
    """The same as keyword arguments of ``uvicorn.Config`` (in-process servers)."""
    return {"proxy_headers": False} if service in OWN_PROXY_HANDLING else {}


def uvicorn_tls_config(service: str, directory: Path | None = None,
                       protocol: str = PROTOCOL, *, force: bool = False) -> dict[str, Any]:
    """The same settings as keyword arguments of ``uvicorn.Config`` (in-process servers).

    ``force=True`` returns them even when ``CHARTER_MTLS`` is off or the service is not an
    mTLS service (tests); otherwise ``{}`` in those cases, like :func:`uvicorn_tls_args`.
    """
    if not (force or config.uses_mtls(service)):
        return {}
    files = mtls.require_credentials(service, directory)
    return {
        "ssl_keyfile": str(files.key),
        "ssl_certfile": str(files.cert),
        "ssl_ca_certs": str(files.ca),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "http": protocol,
    }


# uvicorn's exit status for "failed before serving": its worker supervisor (``--workers``)
# stops instead of restarting a worker that exits with it.
STARTUP_FAILURE = 3

F = TypeVar("F", bound=Callable[[], Any])


def fails_fast(factory: F) -> F:
    """Mark an ASGI app factory whose configuration error stops the server.

    uvicorn reports an exception raised by ``--factory`` and its process exits 1, which
    its ``--workers`` supervisor answers by starting the worker again, for ever. A
    :class:`charter.config.ConfigError` (fail closed: a missing or bad setting) is printed
    once and ends the process with :data:`STARTUP_FAILURE`, which stops uvicorn.
    """

    @functools.wraps(factory)
    def wrapper() -> Any:
        try:
            return factory()
        except config.ConfigError as exc:
            print(f"charter: configuration error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(STARTUP_FAILURE) from None

    return wrapper  # type: ignore[return-value]


def service_env(service: str) -> dict[str, str]:
    """Environment a service process needs: its identity (``CHARTER_SERVICE``).

    The identity selects the client certificate its outbound calls present and turns on
    the refusal of plain-HTTP calls to its internal operations.
    """
    return {"CHARTER_SERVICE": service}


def probe(url: str, identity: str | None = None, timeout: float = 2.0) -> bool:
    """``GET url`` presenting this process's certificate (``https`` URLs, mTLS on).

    True for a 200 answer. For readiness polls (``charter up``) and Kubernetes exec
    probes (an ``httpGet`` probe cannot present a client certificate). Any ``https`` URL
    is treated as a platform service's (e.g. ``https://127.0.0.1:8101`` inside a pod).
    """
    try:
        https = url.lower().startswith("https://") and config.mtls_enabled()
        verify = mtls.client_ssl_context(identity) if https else True
        return httpx.get(url, verify=verify, timeout=timeout).status_code == 200
    except (httpx.HTTPError, OSError, config.ConfigError):
        return False


def reuseport_listener(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` that other processes may bind as well.

    With ``SO_REUSEPORT`` every worker process listens on a socket of its own and the
    kernel spreads new connections over them by their address hash. uvicorn's
    ``--workers`` shares one listening socket instead, and whichever worker wakes first
    accepts every connection waiting (uvloop accepts until the queue is empty): measured
    under ``wrk -c20``, one worker could take most of the 20 kept-alive connections
    while the other idled (docs/performance.md).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def worker_config(service: str, factory: str, host: str, port: int) -> uvicorn.Config:
    """The ``uvicorn.Config`` of one worker process of ``service`` (what ``charter up``
    gives a single process on uvicorn's command line)."""
    return uvicorn.Config(
        factory, factory=True, host=host, port=port, access_log=False,
        log_level="warning", timeout_graceful_shutdown=5,
        **uvicorn_keepalive_config(), **uvicorn_proxy_config(service),
        **uvicorn_tls_config(service))


def run_worker(service: str, factory: str, host: str, port: int) -> int:
    """Serve ``factory`` as one of several worker processes on ``host:port``."""
    sock = reuseport_listener(host, port)
    uvicorn.Server(worker_config(service, factory, host, port)).run(sockets=[sock])
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m charter.serve probe URL [IDENTITY]``: exit 0 when ``URL`` answers 200.

    ``python -m charter.serve worker SERVICE FACTORY HOST PORT``: one worker process of
    ``SERVICE`` (``charter up`` starts several, see :func:`reuseport_listener`).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 5 and args[0] == "worker":
        return run_worker(args[1], args[2], args[3], int(args[4]))
    if len(args) not in (2, 3) or args[0] != "probe":
        print("usage: python -m charter.serve probe URL [IDENTITY]\n"
              "       python -m charter.serve worker SERVICE FACTORY HOST PORT",
              file=sys.stderr)
        return 2
    return 0 if probe(args[1], args[2] if len(args) == 3 else None) else 1


if __name__ == "__main__":
    raise SystemExit(main())

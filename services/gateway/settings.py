"""The gateway's settings, parsed and checked by :class:`GatewayConfig` (pydantic-settings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pydantic import Field

from charter.config import ComponentSettings, ConfigError
from charter.security.client_ip import IPNetwork, NetworkList

from .cors import OriginList


class GatewayConfig(ComponentSettings):
    """``GATEWAY_*`` variables over the shared ones; no database; its client certificate
    under ``CHARTER_PKI_DIR`` when mutual TLS is on (it calls the services with it)."""

    component: ClassVar[str] = "gateway"
    has_database: ClassVar[bool] = False

    gateway_rate_limit: float = 100.0
    gateway_rate_burst: int = Field(200, ge=1)
    gateway_upstream_timeout: float = Field(10.0, gt=0)
    gateway_connect_timeout: float = Field(2.0, gt=0)
    gateway_max_body_bytes: int = Field(1024 * 1024, ge=0)
    gateway_max_connections: int = Field(200, ge=1)
    gateway_max_keepalive: int = Field(50, ge=0)
    # Idle upstream connections are dropped after this many seconds: keep it below the
    # services' keep-alive (uvicorn's default 5 s; charter up: charter.serve.KEEP_ALIVE).
    gateway_upstream_keepalive_expiry: float = Field(4.0, gt=0)
    # The upstream HTTP client: aiohttp (default, cheaper per request) or httpx/httpcore
    # on the gateway's own pool (services/gateway/pool.py); docs/gateway.md.
    gateway_upstream_client: Literal["aiohttp", "httpcore"] = "aiohttp"
    gateway_public_url: str | None = None
    gateway_expose_internal: bool = False
    gateway_access_log: bool = True
    # Proxies in front of the gateway whose X-Forwarded-For / Forwarded it believes.
    gateway_trusted_proxies: NetworkList = ()
    # Largest total size of a request's header fields (→ 431); docs/gateway.md.
    gateway_max_header_bytes: int = Field(16 * 1024, ge=1024)
    # CORS: browser origins allowed to call the APIs (none: CORS off); docs/gateway.md.
    gateway_cors_origins: OriginList = ()
    gateway_cors_allow_credentials: bool = False
    gateway_cors_max_age: int = Field(600, ge=0, le=86400)
    # Compression of JSON answers of at least this many bytes (gzip, br).
    gateway_compression: bool = True
    gateway_compression_min_bytes: int = Field(1024, ge=0)
    # Grafana's base URL: the portal links each API to its dashboard (none: no link).
    gateway_dashboard_url: str | None = None
    # Load balancing and failover over each service's instances (docs/gateway.md):
    # discovery default (per service: <SERVICE>_DISCOVERY), DNS re-resolution, active
    # health checks, passive ejection with a doubling back-off.
    gateway_discovery: Literal["static", "dns"] = "static"
    gateway_dns_refresh: float = Field(5.0, gt=0)
    gateway_health_interval: float = Field(1.0, gt=0)
    gateway_health_timeout: float = Field(1.0, gt=0)
    gateway_healthy_threshold: int = Field(1, ge=1)
    gateway_unhealthy_threshold: int = Field(2, ge=1)
    gateway_eject_after: int = Field(3, ge=1)
    gateway_eject_base: float = Field(2.0, gt=0)
    gateway_eject_max: float = Field(30.0, gt=0)
    # /health/ready also needs >= 1 instance in rotation for every service.
    gateway_ready_requires_upstreams: bool = False

    @property
    def rate_limited(self) -> bool:
        """True when rate limiting is on (``GATEWAY_RATE_LIMIT > 0``)."""
        return self.gateway_rate_limit > 0

    def workers_problem(self) -> str | None:
        """Why this worker count would break the rate limit (in every mode), or ``None``.

        In-process buckets are per worker process: ``N`` workers would let each client
        through ``N`` times the limit. Shared buckets need ``REDIS_URL``.
        """
        if self.charter_workers > 1 and self.rate_limited and not self.redis_url:
            return (f"CHARTER_WORKERS={self.charter_workers} with rate limiting on "
                    "(GATEWAY_RATE_LIMIT > 0) and no REDIS_URL: each worker process would "
                    "keep its own buckets and multiply the limit by the worker count; set "
                    "REDIS_URL (buckets shared in Redis) or run one worker "
                    "(CHARTER_WORKERS=1)")
        return None

    def cors_problem(self) -> str | None:
        """Why the CORS settings are unsafe (in every mode), or ``None``: credentials are
        never allowed for a wildcard origin."""
        if self.gateway_cors_allow_credentials and "*" in self.gateway_cors_origins:
            return ("GATEWAY_CORS_ALLOW_CREDENTIALS=1 with GATEWAY_CORS_ORIGINS='*': "
                    "credentials are allowed only for explicitly listed origins")
        return None

    def problems(self) -> list[str]:
        found = super().problems()  # empty in development mode
        extra = [p for p in (self.workers_problem(), self.cors_problem()) if p]
        return [*found, *extra]

    @classmethod
    def load(cls) -> GatewayConfig:
        """Parse and check; the worker policy holds in development mode too."""
        cfg = cls.parse()
        found = cfg.problems()
        if found:
            head = ("gateway cannot start:" if cfg.development else
                    "gateway cannot start outside development mode (CHARTER_ENV=development "
                    "asks for it):")
            raise ConfigError(head + "".join(f"\n  - {p}" for p in found))
        return cfg


def load_config() -> GatewayConfig:
    """The checked configuration (:class:`charter.config.ConfigError` lists what is wrong)."""
    return GatewayConfig.load()


def gateway_workers(cores: int, cfg: GatewayConfig | None = None) -> int:
    """How many worker processes the gateway may run on ``cores`` cores.

    ``cores`` when the rate limit is shared (``REDIS_URL``) or off; otherwise 1: the
    gateway is one async process and its in-memory buckets are then exact.
    """
    cfg = cfg or GatewayConfig.parse()
    if cfg.redis_url or not cfg.rate_limited:
        return max(1, cores)
    return 1


@dataclass(frozen=True)
class GatewaySettings:
    """Limits and timeouts of the gateway.

    ``rate_limit`` requests per second per client with bursts of ``rate_burst``;
    ``rate_limit <= 0`` turns rate limiting off. Operations marked
    ``x-internal-callers`` (service-to-service only) are refused with 403 unless
    ``expose_internal``. ``trusted_proxies``: the networks of the proxies in front of the
    gateway whose ``X-Forwarded-For`` / ``Forwarded`` it believes
    (:mod:`charter.security.client_ip`); none by default: the client is the TCP peer.
    ``upstream_keepalive_expiry``: seconds an idle pooled upstream connection is kept;
    below the services' keep-alive, so the gateway never reuses one they are closing.
    ``redis_url``: rate-limit buckets shared in Redis (``None``: in-process); ``workers``:
    the worker processes (``CHARTER_WORKERS``), whose share of the limit each process
    applies on its own while Redis is unreachable. ``max_header_bytes``: the largest
    total size of a request's header fields (431 above it). ``cors_origins``: browser
    origins allowed cross-origin (empty: CORS off; ``*``: any, never with
    ``cors_allow_credentials``). ``compression``: JSON answers of at least
    ``compression_min_bytes`` are compressed (br or gzip, as the client accepts).
    ``dashboard_url``: Grafana's base URL, for the portal's dashboard links.
    ``discovery`` … ``ready_requires_upstreams``: load balancing over each service's
    instances — the default discovery (``static``/``dns``), DNS re-resolution period,
    active health check interval, timeout and thresholds, passive ejection after
    ``eject_after`` consecutive failures for ``eject_base`` seconds doubling up to
    ``eject_max``, and whether readiness needs every service in rotation
    (docs/gateway.md, *Load balancing and failover*).
    """

    rate_limit: float = 100.0
    rate_burst: int = 200
    upstream_timeout: float = 10.0
    connect_timeout: float = 2.0
    max_body_bytes: int = 1024 * 1024
    max_connections: int = 200
    max_keepalive: int = 50
    upstream_keepalive_expiry: float = 4.0
    upstream_client: str = "aiohttp"
    public_url: str | None = None
    swagger_client_id: str = "swagger-ui"
    expose_internal: bool = False
    trusted_proxies: tuple[IPNetwork, ...] = ()
    max_header_bytes: int = 16 * 1024
    cors_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    cors_max_age: int = 600
    compression: bool = True
    compression_min_bytes: int = 1024
    dashboard_url: str | None = None
    discovery: str = "static"
    dns_refresh: float = 5.0
    health_interval: float = 1.0
    health_timeout: float = 1.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 2
    eject_after: int = 3
    eject_base: float = 2.0
    eject_max: float = 30.0
    ready_requires_upstreams: bool = False
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    workers: int = 1

    @classmethod
    def from_env(cls, cfg: GatewayConfig | None = None) -> GatewaySettings:
        """``GATEWAY_*`` environment variables over the defaults (parsed, not checked)."""
        cfg = cfg or GatewayConfig.parse()
        return cls(
            rate_limit=cfg.gateway_rate_limit,
            rate_burst=cfg.gateway_rate_burst,
            upstream_timeout=cfg.gateway_upstream_timeout,
            connect_timeout=cfg.gateway_connect_timeout,
            max_body_bytes=cfg.gateway_max_body_bytes,
            max_connections=cfg.gateway_max_connections,
            max_keepalive=cfg.gateway_max_keepalive,
            upstream_keepalive_expiry=cfg.gateway_upstream_keepalive_expiry,
            upstream_client=cfg.gateway_upstream_client,
            public_url=(cfg.gateway_public_url or "").rstrip("/") or None,
            swagger_client_id=cfg.swagger_ui_client_id,
            expose_internal=cfg.gateway_expose_internal,
            trusted_proxies=cfg.gateway_trusted_proxies,
            max_header_bytes=cfg.gateway_max_header_bytes,
            cors_origins=cfg.gateway_cors_origins,
            cors_allow_credentials=cfg.gateway_cors_allow_credentials,
            cors_max_age=cfg.gateway_cors_max_age,
            compression=cfg.gateway_compression,
            compression_min_bytes=cfg.gateway_compression_min_bytes,
            dashboard_url=(cfg.gateway_dashboard_url or "").rstrip("/") or None,
            discovery=cfg.gateway_discovery,
            dns_refresh=cfg.gateway_dns_refresh,
            health_interval=cfg.gateway_health_interval,
            health_timeout=cfg.gateway_health_timeout,
            healthy_threshold=cfg.gateway_healthy_threshold,
            unhealthy_threshold=cfg.gateway_unhealthy_threshold,
            eject_after=cfg.gateway_eject_after,
            eject_base=cfg.gateway_eject_base,
            eject_max=cfg.gateway_eject_max,
            ready_requires_upstreams=cfg.gateway_ready_requires_upstreams,
            redis_url=cfg.redis_url,
            workers=cfg.charter_workers,
        )

"""The gateway's settings, parsed and checked by :class:`GatewayConfig` (pydantic-settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from charter.config import ComponentSettings
from charter.security.client_ip import IPNetwork, NetworkList


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
    gateway_public_url: str | None = None
    gateway_expose_internal: bool = False
    gateway_access_log: bool = True
    # Proxies in front of the gateway whose X-Forwarded-For / Forwarded it believes.
    gateway_trusted_proxies: NetworkList = ()


def load_config() -> GatewayConfig:
    """The checked configuration (:class:`charter.config.ConfigError` lists what is wrong)."""
    return GatewayConfig.load()


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
    """

    rate_limit: float = 100.0
    rate_burst: int = 200
    upstream_timeout: float = 10.0
    connect_timeout: float = 2.0
    max_body_bytes: int = 1024 * 1024
    max_connections: int = 200
    max_keepalive: int = 50
    upstream_keepalive_expiry: float = 4.0
    public_url: str | None = None
    swagger_client_id: str = "swagger-ui"
    expose_internal: bool = False
    trusted_proxies: tuple[IPNetwork, ...] = ()

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
            public_url=(cfg.gateway_public_url or "").rstrip("/") or None,
            swagger_client_id=cfg.swagger_ui_client_id,
            expose_internal=cfg.gateway_expose_internal,
            trusted_proxies=cfg.gateway_trusted_proxies,
        )

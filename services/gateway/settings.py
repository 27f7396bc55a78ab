"""The gateway's settings, from the environment (twelve-factor, safe defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from charter import config


def _float(name: str, default: float) -> float:
    raw = config.env(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise config.ConfigError(f"{name} must be a number, not {raw!r}") from exc


@dataclass(frozen=True)
class GatewaySettings:
    """Limits and timeouts of the gateway.

    ``rate_limit`` requests per second per client with bursts of ``rate_burst``;
    ``rate_limit <= 0`` turns rate limiting off. Operations marked
    ``x-internal-callers`` (service-to-service only) are refused with 403 unless
    ``expose_internal``.
    """

    rate_limit: float = 100.0
    rate_burst: int = 200
    upstream_timeout: float = 10.0
    connect_timeout: float = 2.0
    max_body_bytes: int = 1024 * 1024
    max_connections: int = 200
    max_keepalive: int = 50
    public_url: str | None = None
    swagger_client_id: str = "swagger-ui"
    expose_internal: bool = False

    @classmethod
    def from_env(cls) -> GatewaySettings:
        """``GATEWAY_*`` environment variables over the defaults."""
        d = cls()
        return cls(
            rate_limit=_float("GATEWAY_RATE_LIMIT", d.rate_limit),
            rate_burst=int(_float("GATEWAY_RATE_BURST", d.rate_burst)),
            upstream_timeout=_float("GATEWAY_UPSTREAM_TIMEOUT", d.upstream_timeout),
            connect_timeout=_float("GATEWAY_CONNECT_TIMEOUT", d.connect_timeout),
            max_body_bytes=int(_float("GATEWAY_MAX_BODY_BYTES", d.max_body_bytes)),
            max_connections=int(_float("GATEWAY_MAX_CONNECTIONS", d.max_connections)),
            max_keepalive=int(_float("GATEWAY_MAX_KEEPALIVE", d.max_keepalive)),
            public_url=(config.env("GATEWAY_PUBLIC_URL") or "").rstrip("/") or None,
            swagger_client_id=config.env("SWAGGER_UI_CLIENT_ID", "swagger-ui") or "swagger-ui",
            expose_internal=(config.env("GATEWAY_EXPOSE_INTERNAL", "0") or "0").lower()
            in ("1", "true", "yes", "on"),
        )

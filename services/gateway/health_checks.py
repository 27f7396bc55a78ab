"""The gateway's active health checks and DNS refresh (one loop per worker process).

Every ``GATEWAY_HEALTH_INTERVAL`` seconds each known instance of every service gets
``GET /health/ready`` on its own keep-alive pool, within ``GATEWAY_HEALTH_TIMEOUT``:
200 passes, anything else (status, timeout, connection error) fails.
``GATEWAY_UNHEALTHY_THRESHOLD`` consecutive failures take an instance out of rotation,
``GATEWAY_HEALTHY_THRESHOLD`` consecutive passes bring it back (and readmit an ejected
one once its back-off is over). DNS services are re-resolved every
``GATEWAY_DNS_REFRESH`` seconds. Each gateway worker process runs this loop for its own
balancers: N workers send N checks per interval (a few small GETs per second).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import httpx

from .balancer import Balancer, Instance

if TYPE_CHECKING:
    from .upstreams import Upstreams

log = logging.getLogger(__name__)

READY_PATH = "/health/ready"


async def probe(instance: Instance, timeout: float) -> str | None:
    """``None`` when ``instance`` answers ``/health/ready`` with 200, else why not."""
    endpoint = instance.endpoint
    headers = [(b"host", endpoint.host)] if endpoint.host is not None else []
    request = httpx.Request("GET", endpoint.base + READY_PATH, headers=headers)
    if endpoint.sni is not None:
        request.extensions["sni_hostname"] = endpoint.sni
    request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
    try:
        async with asyncio.timeout(timeout):
            response = await instance.transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
    except TimeoutError:
        return "timeout"
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return None if response.status_code == 200 else f"status {response.status_code}"


async def check(balancer: Balancer, instance: Instance, timeout: float) -> None:
    """Probe one instance and record the verdict."""
    why = await probe(instance, timeout)
    if instance.draining:
        return
    if why is None:
        balancer.check_passed(instance)
    else:
        balancer.check_failed(instance, why)


async def check_round(upstreams: Upstreams) -> None:
    """One round: DNS refreshes that are due, then every instance's check at once."""
    settings = upstreams.settings
    loop = asyncio.get_running_loop()
    balancers = list(upstreams.balancers().values())
    for balancer in balancers:
        if balancer.dns_urls and loop.time() >= balancer.next_refresh:
            balancer.next_refresh = loop.time() + settings.dns_refresh
            await upstreams.refresh(balancer)
    await asyncio.gather(*(check(b, i, settings.health_timeout)
                           for b in balancers for i in b.all() if not i.draining))
    for balancer in balancers:
        balancer.sample()
        await upstreams.reap(balancer)


async def run_checks(upstreams: Upstreams) -> None:
    """Check rounds every ``GATEWAY_HEALTH_INTERVAL`` seconds until cancelled."""
    interval = upstreams.settings.health_interval
    while True:
        started = asyncio.get_running_loop().time()
        try:
            await check_round(upstreams)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let one bad round stop the checks
            log.exception("upstream health check round failed")
        spent = asyncio.get_running_loop().time() - started
        await asyncio.sleep(max(0.0, interval - spent))

"""``charter up --replicas catalog=2,exchange=2``: several instances of a service.

An *instance* is a full copy of a service on a port of its own, with its usual worker
processes (:mod:`charterctl.workers`), supervised on its own (:mod:`charterctl.supervisor`).
Instances of a service share its database, its broker and the var dir (so its leader locks
and cache version file): they are interchangeable, and the gateway spreads requests over
them.

Ports: instance 1 keeps the service's port (``<SERVICE>_PORT``); instance ``k`` ≥ 2 listens
on the ``k-1``-th entry of ``<SERVICE>_REPLICA_PORTS`` (comma-separated, e.g.
``CATALOG_REPLICA_PORTS=9101,9102``) when set, else on ``<SERVICE>_PORT + 10·(k-1)``
(catalog 8101 → 8111, 8121 …: the default ports 8101–8107 never collide).

Every process ``charter up`` starts gets ``<SERVICE>_URLS`` (every instance's base URL,
instance 1 first) for each replicated service — what the gateway balances over — and each
instance gets ``CHARTER_INSTANCE=k`` and ``CHARTER_REPLICAS=N`` (what
:func:`charter.cache.make_cache` reads to share invalidations across instances).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from charter import config

MAX_REPLICAS = 8
PORT_STEP = 10
NOT_REPLICABLE = frozenset({"gateway", "auth"})
INSTANCE_ENV = "CHARTER_INSTANCE"
REPLICAS_ENV = "CHARTER_REPLICAS"


class ReplicaError(ValueError):
    """A ``--replicas`` argument (or replica port setting) that cannot be used."""


def parse(spec: str | None, known: frozenset[str] | set[str]) -> dict[str, int]:
    """``"catalog=2,cart=3"`` → ``{"catalog": 2, "cart": 3}``.

    Raises :class:`ReplicaError` for a malformed entry, an unknown service, gateway or auth
    (one instance each: the gateway is the entry point, auth holds per-process state),
    a count below 1 or above :data:`MAX_REPLICAS`, or a service named twice.
    """
    counts: dict[str, int] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ReplicaError(f"--replicas: {item!r} is not SERVICE=COUNT")
        if name not in known:
            raise ReplicaError(f"--replicas: unknown service {name!r}; known: "
                               f"{', '.join(sorted(known - NOT_REPLICABLE))}")
        if name in NOT_REPLICABLE:
            raise ReplicaError(f"--replicas: {name} runs as one instance "
                               "(replicate the services behind it)")
        if name in counts:
            raise ReplicaError(f"--replicas: {name} is named twice")
        try:
            count = int(raw.strip())
        except ValueError:
            raise ReplicaError(f"--replicas: {name}={raw.strip()!r}: the count must be "
                               "an integer") from None
        if not 1 <= count <= MAX_REPLICAS:
            raise ReplicaError(f"--replicas: {name}={count}: the count must be between 1 "
                               f"and {MAX_REPLICAS}")
        counts[name] = count
    return counts


@dataclass(frozen=True)
class Instance:
    """One instance of a service: its number (1-based), port and base URL."""

    service: str
    number: int
    port: int
    url: str

    @property
    def label(self) -> str:
        """``catalog`` for instance 1, ``catalog#2`` for the others."""
        return self.service if self.number == 1 else f"{self.service}#{self.number}"


def _explicit_ports(service: str, environ: Mapping[str, str]) -> list[int]:
    name = f"{service.upper()}_REPLICA_PORTS"
    raw = (environ.get(name) or "").strip()
    if not raw:
        return []
    try:
        ports = [int(p) for p in raw.split(",") if p.strip()]
    except ValueError:
        raise ReplicaError(f"{name} must be comma-separated ports, not {raw!r}") from None
    if any(not 1 <= p <= 65535 for p in ports):
        raise ReplicaError(f"{name}: every port must be between 1 and 65535")
    return ports


def instances(service: str, count: int,
              environ: Mapping[str, str] | None = None) -> list[Instance]:
    """The ``count`` instances of ``service`` with their ports and URLs (see the module)."""
    env = os.environ if environ is None else environ
    base = config.port(service)
    explicit = _explicit_ports(service, env)
    if explicit and len(explicit) < count - 1:
        raise ReplicaError(f"{service.upper()}_REPLICA_PORTS names {len(explicit)} ports; "
                           f"{count - 1} needed for {count} instances")
    scheme = urlsplit(config.service_url(service)).scheme or "http"
    found: list[Instance] = []
    for number in range(1, count + 1):
        if number == 1:
            port = base
        elif explicit:
            port = explicit[number - 2]
        else:
            port = base + PORT_STEP * (number - 1)
        if port > 65535:
            raise ReplicaError(f"{service}#{number}: port {port} is out of range; set "
                               f"{service.upper()}_REPLICA_PORTS")
        url = (config.service_url(service) if number == 1
               else f"{scheme}://127.0.0.1:{port}")
        found.append(Instance(service, number, port, url))
    return found


def plan(services: list[str], counts: Mapping[str, int],
         environ: Mapping[str, str] | None = None) -> dict[str, list[Instance]]:
    """Every service's instances (one unless ``counts`` says more).

    :class:`ReplicaError` when ``counts`` names a service that is not started
    (``--only``) or two instances would share a port.
    """
    missing = sorted(set(counts) - set(services))
    if missing:
        raise ReplicaError(f"--replicas: {', '.join(missing)} not started (--only)")
    found = {name: instances(name, counts.get(name, 1), environ) for name in services}
    owners: dict[int, str] = {}
    for group in found.values():
        for inst in group:
            other = owners.setdefault(inst.port, inst.label)
            if other != inst.label:
                raise ReplicaError(f"{inst.label} and {other} would both listen on port "
                                   f"{inst.port}; set {inst.service.upper()}_REPLICA_PORTS")
    return found


def urls_env(plan: Mapping[str, list[Instance]]) -> dict[str, str]:
    """``{"CATALOG_URLS": "https://127.0.0.1:8101,https://127.0.0.1:8111"}`` for every
    service with more than one instance (the contract with the gateway)."""
    return {f"{service.upper()}_URLS": ",".join(i.url for i in found)
            for service, found in plan.items() if len(found) > 1}


def instance_env(instance: Instance, count: int) -> dict[str, str]:
    """What one instance's processes get on top of the platform's environment."""
    return {INSTANCE_ENV: str(instance.number), REPLICAS_ENV: str(count)}

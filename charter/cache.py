"""Cache-aside for read paths: an in-process TTL cache by default, Redis when configured.

:func:`make_cache` picks the backend from ``charter.config.redis_url()`` and the processes
that serve the service: its worker processes (``CHARTER_WORKERS``) times its instances
(``CHARTER_REPLICAS``, set by ``charter up --replicas``). Redis when configured (shared by
every worker and replica); else, with several processes, :class:`WorkerSharedCache` —
entries in each process's memory, namespace versions in a file every worker of every
instance maps (``<var>/cache/<service>.versions``, :class:`SharedVersions`; instances on
one host share the var dir), so an invalidation in one process reaches all of them —
or, for entries no write invalidates (they only expire), a :class:`TTLCache` per process;
with one process, the in-process :class:`TTLCache`. Values are JSON documents (what a handler
returns). Two ways to invalidate:

* :meth:`Cache.invalidate_prefix` drops every key starting with a prefix (the in-process
  cache scans its keys; Redis uses ``SCAN`` + ``UNLINK``);
* :class:`Namespace` puts a version number into every key and invalidates by bumping it —
  O(1) on any backend; the orphaned entries simply expire.

A cache is an optimisation, never a dependency: :class:`RedisCache` logs a warning and
behaves as a miss (or a no-op) when Redis fails, so reads fall through to the database.
"""

from __future__ import annotations

import fcntl
import json
import logging
import mmap
import os
import struct
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from charter import config

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TTL = 30.0


class Cache(ABC):
    """A key → JSON value store with expiry."""

    default_ttl: float = DEFAULT_TTL

    @abstractmethod
    def get(self, key: str) -> Any | None:
        """The value, or ``None`` on a miss (``None`` itself is never stored)."""

    @abstractmethod
    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds (the cache's default when ``None``)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Forget one key."""

    @abstractmethod
    def invalidate_prefix(self, prefix: str) -> None:
        """Forget every key that starts with ``prefix``."""

    @abstractmethod
    def incr(self, key: str) -> int:
        """Atomically add one to an integer counter (created at 1); never expires."""

    @abstractmethod
    def counter(self, key: str) -> int | None:
        """The counter's value (0 when absent, ``None`` when it cannot be read)."""

    @abstractmethod
    def clear(self) -> None:
        """Forget everything this cache holds."""

    def get_or_load(self, key: str, loader: Callable[[], T], ttl: float | None = None) -> T:
        """Cache-aside: the cached value, or ``loader()`` stored for next time."""
        hit = self.get(key)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        value = loader()
        if value is not None:
            self.set(key, value, ttl)
        return value

    def namespace(self, name: str) -> Namespace:
        return Namespace(self, name)


class Namespace:
    """A group of keys invalidated together by bumping a version number."""

    def __init__(self, cache: Cache, name: str) -> None:
        self.cache = cache
        self.name = name
        self._version_key = f"__ns__:{name}"

    def version(self) -> int | None:
        return self.cache.counter(self._version_key)

    def key(self, key: str) -> str | None:
        """The versioned key, or ``None`` when the version is unknown (cache bypassed)."""
        version = self.version()
        return None if version is None else f"{self.name}:v{version}:{key}"

    def get(self, key: str) -> Any | None:
        full = self.key(key)
        return None if full is None else self.cache.get(full)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        full = self.key(key)
        if full is not None:
            self.cache.set(full, value, ttl)

    def get_or_load(self, key: str, loader: Callable[[], T], ttl: float | None = None) -> T:
        full = self.key(key)
        if full is None:
            return loader()
        return self.cache.get_or_load(full, loader, ttl)

    def invalidate(self) -> None:
        """Every key of the namespace becomes unreachable (old entries expire on their own)."""
        self.cache.incr(self._version_key)


class TTLCache(Cache):
    """In-process, thread-safe, bounded (least recently used entries go first)."""

    def __init__(
        self,
        maxsize: int = 4096,
        default_ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.default_ttl = default_ttl
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def get(self, key: str) -> Any | None:
        now = self._clock()
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            expires, payload = entry
            if expires <= now:
                del self._data[key]
                return None
            self._data.move_to_end(key)
        # Stored as JSON text: every reader gets its own copy, like Redis would give.
        return json.loads(payload)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if value is None:
            return
        payload = json.dumps(value, separators=(",", ":"))
        expires = self._clock() + (self.default_ttl if ttl is None else ttl)
        with self._lock:
            self._data[key] = (expires, payload)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def invalidate_prefix(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._data if k.startswith(prefix)]:
                del self._data[key]

    def incr(self, key: str) -> int:
        with self._lock:
            value = self._counters.get(key, 0) + 1
            self._counters[key] = value
            return value

    def counter(self, key: str) -> int | None:
        with self._lock:
            return self._counters.get(key, 0)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._counters.clear()


class RedisCache(Cache):
    """Redis-backed; every key gets ``<prefix>:``; failures degrade to misses, with a warning.

    When a namespace's version cannot be read the cache is bypassed for that read; a bump
    that cannot be written is logged, and the stale entries live at most their TTL.
    """

    def __init__(
        self,
        url_or_client: Any,
        prefix: str,
        default_ttl: float = DEFAULT_TTL,
        socket_timeout: float = 0.25,
    ) -> None:
        import redis

        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        if isinstance(url_or_client, str):
            self.client = redis.Redis.from_url(
                url_or_client,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                health_check_interval=30,
            )
        else:
            self.client = url_or_client
        self.prefix = prefix.rstrip(":")
        self.default_ttl = default_ttl

    def _k(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def _failed(self, op: str, exc: BaseException) -> None:
        log.warning("redis cache %s failed, falling back: %s: %s", op, type(exc).__name__, exc)

    def get(self, key: str) -> Any | None:
        try:
            raw = self.client.get(self._k(key))
        except self._errors as exc:
            self._failed("get", exc)
            return None
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            log.warning("redis cache: undecodable value under %s, ignored", key)
            return None

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if value is None:
            return
        seconds = self.default_ttl if ttl is None else ttl
        try:
            self.client.set(
                self._k(key),
                json.dumps(value, separators=(",", ":")),
                px=max(1, int(seconds * 1000)),
            )
        except self._errors as exc:
            self._failed("set", exc)

    def delete(self, key: str) -> None:
        try:
            self.client.delete(self._k(key))
        except self._errors as exc:
            self._failed("delete", exc)

    def invalidate_prefix(self, prefix: str) -> None:
        try:
            batch: list[Any] = []
            for name in self.client.scan_iter(match=self._k(_glob_escape(prefix)) + "*",
                                              count=500):
                batch.append(name)
                if len(batch) >= 500:
                    self.client.unlink(*batch)
                    batch.clear()
            if batch:
                self.client.unlink(*batch)
        except self._errors as exc:
            self._failed("invalidate_prefix", exc)

    def incr(self, key: str) -> int:
        try:
            return int(self.client.incr(self._k(key)))
        except self._errors as exc:
            self._failed("incr", exc)
            return 0

    def counter(self, key: str) -> int | None:
        try:
            raw = self.client.get(self._k(key))
        except self._errors as exc:
            self._failed("counter", exc)
            return None
        return int(raw) if raw is not None else 0

    def clear(self) -> None:
        self.invalidate_prefix("")

    def ping(self) -> None:
        """Raise if Redis does not answer (for readiness checks)."""
        self.client.ping()


def redis_checks(cache: Cache) -> dict[str, Callable[[], None]]:
    """The readiness check ``redis`` of a service whose cache is a :class:`RedisCache`
    (none otherwise): ``degraded`` (reason ``cache-bypassed``), never down, when Redis
    does not answer — reads fall through to the database."""
    if not isinstance(cache, RedisCache):
        return {}
    from charter.observability.health import Degraded

    def check() -> None:
        try:
            cache.ping()
        except cache._errors as exc:
            raise Degraded("cache-bypassed") from exc

    return {"redis": check}


class SharedVersions:
    """Namespace version counters shared by the worker processes of one host.

    A file of :data:`SLOTS` 64-bit counters mapped into every worker's memory
    (``mmap``): reading a version is a memory read (about a microsecond), bumping one takes
    a POSIX record lock on its 8 bytes (and a thread lock: record locks are per process).
    Keys map to slots by CRC-32, stable across processes; two keys sharing a slot only
    invalidate each other's entries more often, never less. Counters only grow, so a file
    left from an earlier run is harmless.
    """

    SLOTS = 4096

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        size = self.SLOTS * 8
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)  # zero-filled; same size from every worker
        self._map = mmap.mmap(self._fd, size)
        self._lock = threading.Lock()
        self.path = path

    def _offset(self, key: str) -> int:
        return (zlib.crc32(key.encode()) % self.SLOTS) * 8

    def get(self, key: str) -> int:
        """The current value of ``key``'s counter."""
        value: int = _U64.unpack_from(self._map, self._offset(key))[0]
        return value

    def incr(self, key: str) -> int:
        """Add one to ``key``'s counter for every worker; the new value."""
        offset = self._offset(key)
        with self._lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, 8, offset)
            try:
                value: int = _U64.unpack_from(self._map, offset)[0] + 1
                _U64.pack_into(self._map, offset, value)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 8, offset)
        return value


_U64 = struct.Struct("<Q")


class WorkerSharedCache(TTLCache):
    """Entries in each worker's memory, :class:`Namespace` versions shared by all workers.

    Several workers and no Redis: a write in one worker bumps the namespace's version in
    :class:`SharedVersions`, so every worker's next read of that namespace misses and
    reloads — the same guarantee as Redis, at in-process speed for hits. Only namespace
    invalidation crosses workers: :meth:`delete` and :meth:`invalidate_prefix` act on this
    worker's entries only (callers that need them across workers use a Namespace).
    """

    def __init__(self, versions: SharedVersions, maxsize: int = 4096,
                 default_ttl: float = DEFAULT_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(maxsize=maxsize, default_ttl=default_ttl, clock=clock)
        self.versions = versions

    def incr(self, key: str) -> int:
        return self.versions.incr(key)

    def counter(self, key: str) -> int | None:
        return self.versions.get(key)


class NullCache(Cache):
    """No cache: every read misses, writes are dropped (several workers, no Redis).

    Counters behave like an unreachable Redis: :meth:`counter` is ``None`` (unknown), so a
    :class:`Namespace` bypasses the cache and reads go to the loader; :meth:`incr` is 0.
    """

    def get(self, key: str) -> Any | None:
        return None

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        return None

    def delete(self, key: str) -> None:
        return None

    def invalidate_prefix(self, prefix: str) -> None:
        return None

    def incr(self, key: str) -> int:
        return 0

    def counter(self, key: str) -> int | None:
        return None

    def clear(self) -> None:
        return None


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def worker_processes() -> int:
    """How many worker processes serve this service (``CHARTER_WORKERS``, default 1)."""
    count = getattr(config.settings(), "charter_workers", None)
    if isinstance(count, int):
        return count
    raw = config.env("CHARTER_WORKERS", "1") or "1"
    try:
        return max(1, int(raw))
    except ValueError as exc:
        raise config.ConfigError(f"CHARTER_WORKERS must be an integer ≥ 1, not {raw!r}") \
            from exc


def replica_instances() -> int:
    """How many instances of this service run on this host (``CHARTER_REPLICAS``, set by
    ``charter up --replicas``; default 1)."""
    raw = (config.env("CHARTER_REPLICAS", "1") or "1").strip()
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise config.ConfigError(f"CHARTER_REPLICAS must be an integer ≥ 1, not {raw!r}")
    return count


_announced: set[tuple[str, str]] = set()


def make_cache(service: str, default_ttl: float | None = None, *,
               write_invalidated: bool = True) -> Cache:
    """The service's cache: Redis (``REDIS_URL``, keys prefixed ``charter:<service>:``),
    else with several processes (workers × instances) a :class:`WorkerSharedCache` (or a
    :class:`NullCache` when its version file cannot be opened), else an in-process
    :class:`TTLCache`.

    ``write_invalidated=False`` declares that nothing the service does invalidates the
    entries (they only expire, e.g. a copy of an upstream's data): a per-process
    :class:`TTLCache` is then as right as a shared one and is kept with several processes.
    The choice and its reason are logged once per process and service.
    """
    ttl = default_ttl if default_ttl is not None else config.settings().cache_ttl_seconds
    url = config.redis_url()
    workers, instances = worker_processes(), replica_instances()
    many = f"CHARTER_WORKERS={workers}" + (
        f" × CHARTER_REPLICAS={instances}" if instances > 1 else "")
    cache: Cache
    if url:
        cache, why = (RedisCache(url, prefix=f"charter:{service}", default_ttl=ttl),
                      "REDIS_URL is set: shared by every worker and instance")
    elif workers * instances > 1 and write_invalidated:
        try:
            versions = SharedVersions(config.var_dir() / "cache" / f"{service}.versions")
            cache, why = WorkerSharedCache(versions, default_ttl=ttl), (
                f"{many} and no REDIS_URL: entries per process, namespace versions "
                f"shared by every worker of every instance ({versions.path})")
        except OSError as exc:
            cache, why = NullCache(), (
                f"{many}, no REDIS_URL and no shared version file "
                f"({type(exc).__name__}: {exc}): an invalidation in one process would not "
                "reach the others; set REDIS_URL to cache")
    elif workers * instances > 1:
        cache, why = TTLCache(default_ttl=ttl), (
            f"{many} and no REDIS_URL: entries only expire (after {ttl:g}s), so each "
            "process keeps its own")
    else:
        cache, why = TTLCache(default_ttl=ttl), "one worker and no REDIS_URL"
    kind = type(cache).__name__
    if (service, kind) not in _announced:
        _announced.add((service, kind))
        log.info("%s cache: %s (%s)", service, kind, why)
    return cache

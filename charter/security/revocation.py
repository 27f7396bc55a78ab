"""Revocation everywhere: a local deny-set kept current by polling auth's revocation feed.

Access tokens are verified locally (no introspection per request), so a revocation at
auth has to reach every process. Auth serves an incremental feed
(``GET /oauth/revocations?after=<cursor>``, see ``auth.revocations``); every process —
the gateway and each service, in every worker — runs a :class:`RevocationPoller` that
fetches it every ``interval`` seconds (jittered) into a :class:`DenySet`, which the
:class:`~charter.security.tokens.TokenVerifier` consults after the signature check,
cached tokens included. Entries:

- ``jti``: that one access token;
- ``grant``: every access token whose ``sid`` claim is that grant (refresh-token family);
- ``subject``: every token of that ``sub`` issued at or before ``revoked_at``
  (a disabled user; tokens issued after re-enabling stay valid).

Each entry carries ``until`` (the latest ``exp`` a token it matches can have); it is
dropped once that time (plus leeway) has passed. On a failed poll the last good state is
kept and the failure logged; :meth:`RevocationPoller.check` (a readiness check) fails
once no poll has succeeded for ``max_staleness`` seconds.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

KINDS = ("jti", "grant", "subject")
GRANT_CLAIM = "sid"

Clock = Callable[[], float]
FeedFetcher = Callable[[str | None], Mapping[str, Any]]


@dataclass(frozen=True)
class Entry:
    """One revocation: what it matches (``kind``/``value``) and for how long."""

    kind: str
    value: str
    until: int
    revoked_at: int

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Entry:
        """Parse one feed entry (raises ``ValueError``/``KeyError``/``TypeError`` if bad)."""
        kind = str(doc["kind"])
        if kind not in KINDS:
            raise ValueError(f"unknown revocation kind {kind!r}")
        return cls(kind, str(doc["value"]), int(doc["until"]), int(doc["revoked_at"]))


class DenySet:
    """The revocations a process knows of; thread-safe, cheap to query.

    Readers do plain dict look-ups; writers build new dicts and swap them in under a
    lock, so a reader never sees a half-applied update.
    """

    def __init__(self, *, leeway: int = 30, clock: Clock = time.time) -> None:
        self._leeway = leeway
        self._clock = clock
        self._lock = threading.Lock()
        # kind -> value -> (until, revoked_at)
        self._entries: dict[str, dict[str, tuple[int, int]]] = {k: {} for k in KINDS}

    def add(self, entries: Iterable[Entry]) -> int:
        """Merge entries (idempotent); returns how many were new or widened."""
        changed = 0
        with self._lock:
            fresh = {kind: dict(values) for kind, values in self._entries.items()}
            horizon = self._clock() - self._leeway
            for entry in entries:
                if entry.until < horizon:
                    continue
                known = fresh[entry.kind].get(entry.value)
                merged = (
                    (entry.until, entry.revoked_at) if known is None
                    else (max(known[0], entry.until), max(known[1], entry.revoked_at))
                )
                if merged != known:
                    fresh[entry.kind][entry.value] = merged
                    changed += 1
            self._entries = fresh
        return changed

    def prune(self) -> int:
        """Drop entries no live token can match any more; returns how many were dropped."""
        with self._lock:
            horizon = self._clock() - self._leeway
            kept = {
                kind: {v: e for v, e in values.items() if e[0] >= horizon}
                for kind, values in self._entries.items()
            }
            dropped = len(self) - sum(len(v) for v in kept.values())
            self._entries = kept
        return dropped

    def revoked(self, claims: Mapping[str, Any]) -> str | None:
        """The kind of entry that refuses these (already verified) claims, or ``None``."""
        entries = self._entries
        jti = claims.get("jti")
        if jti is not None and str(jti) in entries["jti"]:
            return "jti"
        sid = claims.get(GRANT_CLAIM)
        if sid is not None and str(sid) in entries["grant"]:
            return "grant"
        subject = entries["subject"].get(str(claims.get("sub")))
        if subject is not None and int(claims.get("iat", 0)) <= subject[1]:
            return "subject"
        return None

    def __len__(self) -> int:
        return sum(len(values) for values in self._entries.values())


def http_feed_fetcher(url: str, timeout: float = 2.0) -> FeedFetcher:
    """A fetcher for auth's feed over HTTP(S) (``after`` omitted on the first poll)."""
    client = httpx.Client(timeout=timeout)

    def fetch(cursor: str | None) -> Mapping[str, Any]:
        params = {"after": cursor} if cursor else None
        response = client.get(url, params=params)
        response.raise_for_status()
        document: Mapping[str, Any] = response.json()
        return document

    return fetch


class RevocationPoller:
    """Keeps a :class:`DenySet` current from the feed, in a daemon thread per process.

    ``poll_once`` is the whole protocol (tests drive it with a fake fetcher and clock);
    ``start`` runs it every ``interval`` ± ``jitter`` seconds, and again in a child
    process after a fork (a thread does not survive ``fork``).
    """

    def __init__(
        self,
        fetch: FeedFetcher,
        deny: DenySet,
        *,
        interval: float = 1.0,
        jitter: float = 0.2,
        max_staleness: float = 30.0,
        clock: Clock = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.deny = deny
        self.interval = interval
        self.jitter = jitter
        self.max_staleness = max_staleness
        self.cursor: str | None = None
        self.last_success: float | None = None
        self._fetch = fetch
        self._clock = clock
        self._rng = rng
        self._started = clock()
        self._failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._fork_hook = False

    def poll_once(self) -> bool:
        """Fetch entries after the cursor and apply them; ``False`` (logged) on failure."""
        try:
            document = self._fetch(self.cursor)
            entries = [Entry.from_json(e) for e in document.get("entries", [])]
            cursor = document["cursor"]
        except Exception as exc:  # network, HTTP status, JSON or shape: keep last state
            self._failures += 1
            if self._failures == 1 or self._failures % 30 == 0:
                log.warning("revocation feed poll failed (%d in a row): %s",
                            self._failures, type(exc).__name__)
            return False
        if self._failures:
            log.info("revocation feed reachable again after %d failures", self._failures)
        self._failures = 0
        self.deny.add(entries)
        self.deny.prune()
        self.cursor = str(cursor)
        self.last_success = self._clock()
        return True

    def next_delay(self) -> float:
        """Seconds until the next poll: ``interval`` spread by ± ``jitter`` (a fraction)."""
        spread = self.jitter * (2 * self._rng() - 1)
        return max(0.05, self.interval * (1 + spread))

    @property
    def stale_for(self) -> float:
        """Seconds since the last successful poll (since creation if none yet)."""
        return self._clock() - (self.last_success if self.last_success is not None
                                else self._started)

    def check(self) -> None:
        """Readiness check: raises when no poll succeeded within ``max_staleness``."""
        if self.last_success is None and self.stale_for < self.max_staleness:
            return  # starting up: give the first polls a chance
        if self.stale_for > self.max_staleness:
            raise RuntimeError(f"revocation feed unreachable for {self.stale_for:.0f} s")

    def start(self) -> None:
        """Poll in a daemon thread (idempotent per process; restarted after ``fork``)."""
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="revocation-poller",
                                        daemon=True)
        self._thread.start()
        if not self._fork_hook:
            self._fork_hook = True
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _restart(ref))

    def stop(self) -> None:
        """Stop the polling thread (tests, shutdown)."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.next_delay())


def _restart(ref: weakref.ref[RevocationPoller]) -> None:
    poller = ref()
    if poller is not None and poller._pid not in (None, os.getpid()) \
            and not poller._stop.is_set():
        poller._thread = None
        poller.start()

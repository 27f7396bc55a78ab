"""The ``/metrics`` page of a process that may be one of several workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``charter up`` sets it for a component with more
than one worker), prometheus_client keeps every counter, histogram and gauge of the
process in memory-mapped files ``<dir>/<type>_<pid>.db`` — whatever registry the metric
was created on — and :func:`exposition` answers with the sum over every worker's files
(:class:`prometheus_client.multiprocess.MultiProcessCollector` on a fresh registry; the
process's own registry is left out, or its values would be counted twice). Without the
variable it is ``generate_latest(registry)``.

prometheus_client chooses its value class when it is first imported, from the same
variable: it must be in the environment before the process starts (the runner's job).

A worker that exits should be marked dead (``mark_process_dead``: its ``live*`` gauges
leave the sum). uvicorn has no per-worker exit hook, so :func:`mark_dead_at_exit`
registers an ``atexit`` handler (uvicorn's workers are ``spawn``-ed interpreters: it
runs on a normal exit, not when a worker is killed). Counters and histograms of a dead
worker stay in the sum, as they must for totals. Gauges need a ``multiprocess_mode``
(``livesum``, ``max``, ``mostrecent``, …); a gauge without one is exported per pid.
"""

from __future__ import annotations

import atexit
import contextlib
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

ENV = "PROMETHEUS_MULTIPROC_DIR"

_registered_pid: int | None = None


def multiprocess_dir() -> str | None:
    """The multiprocess metrics directory, or ``None`` (one process)."""
    return os.environ.get(ENV) or None


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The Prometheus text page and its content type: every worker's sum in multiprocess
    mode, else ``registry``'s samples."""
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(registry), CONTENT_TYPE_LATEST
    mark_dead_at_exit()
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined, path=directory)
    return generate_latest(combined), CONTENT_TYPE_LATEST


def _mark_dead(pid: int, directory: str) -> None:
    with contextlib.suppress(OSError):  # the directory may be gone (cleaned at start)
        multiprocess.mark_process_dead(pid, directory)


def mark_dead_at_exit() -> bool:
    """In multiprocess mode, mark this process dead when it exits (once per process).

    True when a handler is registered for this process (now or before).
    """
    global _registered_pid
    directory = multiprocess_dir()
    if directory is None:
        return False
    pid = os.getpid()
    if _registered_pid != pid:
        _registered_pid = pid
        atexit.register(_mark_dead, pid, directory)
    return True

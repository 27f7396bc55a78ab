"""The process manager behind ``charter up``: restart what crashes, stop what cannot start.

Every child process (each worker of each component) is a *slot*, supervised on its own:

* a process that exits while the platform is not shutting down is logged
  (``catalog[worker 2] exited with -9 (SIGKILL); restarting in 0.5s (restart #1)``),
  counted, and started again with the same command line and environment after an
  exponential back-off (:meth:`Policy.delay`: 0.5 s, 1, 2, 4 … capped at 30 s). The back-off
  starts again from 0.5 s once a process has stayed up :attr:`Policy.stable_after` seconds.
  The other processes keep running.
* a process that exits within :attr:`Policy.startup_window` seconds of its start has
  crashed *at start-up*; :attr:`Policy.crash_loop_limit` of those in a row on one slot
  raise :class:`CrashLoop` ("catalog keeps crashing at start-up …"): the caller stops
  everything.
* exit code 3 (``charter.serve.STARTUP_FAILURE``, "failed before serving") gets the same
  treatment, not an immediate stop: ``charter.serve.fails_fast`` uses it for a
  configuration error, but uvicorn uses it too for a port still in use and a failed
  lifespan start-up, which a restart can heal
  (``charter up`` has already checked every component's configuration before starting).

The supervisor is pure policy over a Popen-like seam (:class:`Proc`, a ``spawn`` callable)
and an injectable clock, so it is tested without starting anything. It never sleeps and
owns no thread: the caller calls :meth:`Supervisor.check` in its loop. A small status file
(``component → restarts, last exit, pids``, the same per instance of ``charter up
--replicas``) is rewritten on every change for tools and tests. An instance's processes are
slots like any other (``catalog#2[worker 1]``), restarted and counted on their own.
Hand-written because the platform's processes must run in the foreground of one command on
a bare laptop (no systemd, supervisord or container runtime to lean on), and the logic is
about sixty lines of bookkeeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

STARTUP_FAILURE = 3  # charter.serve.STARTUP_FAILURE (not imported: it pulls in uvicorn)
_STARTUP_FAILURE_HINT = "failed before serving: a configuration error, or its port in use"


class Proc(Protocol):
    """What the supervisor needs of a child process (:class:`subprocess.Popen` fits)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


Spawn = Callable[[], Proc]


@dataclass(frozen=True)
class Policy:
    """When to restart, and when to give up."""

    initial_delay: float = 0.5
    max_delay: float = 30.0
    stable_after: float = 30.0  # up this long: the back-off starts again from initial_delay
    startup_window: float = 10.0  # an exit sooner after the start is a start-up crash
    crash_loop_limit: int = 5  # start-up crashes in a row that stop everything

    def delay(self, crashes: int) -> float:
        """Seconds to wait before the restart after ``crashes`` crashes in a row (≥ 1)."""
        return min(self.max_delay, self.initial_delay * 2 ** (max(1, crashes) - 1))


class SupervisionError(RuntimeError):
    """A component cannot be kept running; the platform should stop."""

    def __init__(self, component: str, returncode: int, message: str) -> None:
        super().__init__(message)
        self.component = component
        self.returncode = returncode


class CrashLoop(SupervisionError):
    """A process of ``component`` crashed at start-up too many times in a row."""


def describe_exit(returncode: int) -> str:
    """``1``, or ``-9 (SIGKILL)`` for a process ended by a signal."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"{returncode} ({signal.Signals(-returncode).name})"
    return str(returncode)


def _print(line: str) -> None:
    print(f"charter: {line}", flush=True)


@dataclass
class _Slot:
    component: str
    index: int  # 1-based worker number within its instance
    spawn: Spawn
    on_exit: Callable[[int], None] | None
    instance: int = 1  # 1-based instance number (charter up --replicas)
    proc: Proc | None = None
    started_at: float = 0.0
    crashes: int = 0  # in a row, since the last stable run (drives the back-off)
    startup_crashes: int = 0  # in a row, each within the start-up window
    restart_at: float | None = None

    @property
    def name(self) -> str:
        """``catalog[worker 2]``; ``catalog#2[worker 1]`` for another instance."""
        label = self.component if self.instance == 1 else f"{self.component}#{self.instance}"
        return f"{label}[worker {self.index}]"


@dataclass
class _Instance:
    port: int | None = None
    workers: int = 0
    restarts: int = 0
    last_exit: int | None = None
    last_exit_at: float | None = None
    last_restart_at: float | None = None  # wall-clock time of the last restart


@dataclass
class _Record:
    workers: int = 0
    restarts: int = 0
    last_exit: int | None = None
    last_exit_at: float | None = None  # wall-clock time (status file)
    slots: list[_Slot] = field(default_factory=list)
    instances: dict[int, _Instance] = field(default_factory=dict)


class Supervisor:
    """Starts, watches and restarts the processes of several components."""

    def __init__(self, policy: Policy | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] = _print,
                 status_path: Path | None = None) -> None:
        self.policy = policy or Policy()
        self._clock = clock
        self._log = log
        self._status_path = status_path
        self._components: dict[str, _Record] = {}
        self._stopping = False

    # -- starting and watching ------------------------------------------------------------

    def start(self, component: str, spawn: Spawn, count: int = 1, *,
              on_exit: Callable[[int], None] | None = None, instance: int = 1,
              port: int | None = None) -> None:
        """Start ``count`` processes of ``component``'s ``instance``, each with ``spawn()``.

        ``spawn`` is called again for every restart (same command, same environment);
        ``on_exit(pid)`` runs for every process that ended (e.g. to mark its metrics dead).
        ``port`` is only reported (status file).
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        record = self._components.setdefault(component, _Record())
        info = record.instances.setdefault(instance, _Instance(port=port))
        for _ in range(count):
            index = sum(1 for s in record.slots if s.instance == instance) + 1
            slot = _Slot(component, index, spawn, on_exit, instance=instance)
            record.slots.append(slot)
            record.workers += 1
            info.workers += 1
            self._launch(slot)
        self.write_status()

    def check(self) -> None:
        """Reap processes that exited and start those whose back-off is over.

        Raises :class:`CrashLoop` when a component keeps crashing at start-up. Does nothing
        once :meth:`begin_shutdown` was called.
        """
        changed = False
        for record in self._components.values():
            for slot in record.slots:
                if self._stopping:
                    return
                if slot.proc is not None:
                    code = slot.proc.poll()
                    if code is not None:
                        self._exited(record, slot, code)
                        changed = True
                elif slot.restart_at is not None and self._clock() >= slot.restart_at:
                    self._launch(slot)
                    record.instances[slot.instance].last_restart_at = time.time()
                    self._log(f"{slot.name} restarted (pid {self._pid(slot)})")
                    changed = True
        if changed:
            self.write_status()

    def next_restart_in(self) -> float | None:
        """Seconds until the next scheduled restart (``None``: none scheduled)."""
        due = [s.restart_at for r in self._components.values() for s in r.slots
               if s.proc is None and s.restart_at is not None]
        return max(0.0, min(due) - self._clock()) if due else None

    def _launch(self, slot: _Slot) -> None:
        slot.proc = slot.spawn()
        slot.started_at = self._clock()
        slot.restart_at = None

    def _exited(self, record: _Record, slot: _Slot, code: int) -> None:
        assert slot.proc is not None
        pid = self._pid(slot)
        uptime = self._clock() - slot.started_at
        slot.proc = None
        if slot.on_exit is not None and pid is not None:
            slot.on_exit(pid)
        record.last_exit, record.last_exit_at = code, time.time()
        info = record.instances[slot.instance]
        info.last_exit, info.last_exit_at = record.last_exit, record.last_exit_at
        exit_text = describe_exit(code)
        policy = self.policy
        slot.startup_crashes = slot.startup_crashes + 1 if uptime < policy.startup_window else 0
        if slot.startup_crashes >= policy.crash_loop_limit:
            self._log(f"{slot.name} exited with {exit_text}")
            hint = f": {_STARTUP_FAILURE_HINT}" if code == STARTUP_FAILURE else ""
            raise CrashLoop(
                slot.component, code,
                f"{slot.component} keeps crashing at start-up (last exit code {exit_text}"
                f"{hint}; {slot.startup_crashes} times in a row); see its log above")
        slot.crashes = 1 if uptime >= policy.stable_after else slot.crashes + 1
        delay = policy.delay(slot.crashes)
        slot.restart_at = self._clock() + delay
        record.restarts += 1
        info.restarts += 1
        self._log(f"{slot.name} exited with {exit_text}; restarting in {delay:g}s "
                  f"(restart #{record.restarts})")

    # -- questions ------------------------------------------------------------------------

    @staticmethod
    def _pid(slot: _Slot) -> int | None:
        return slot.proc.pid if slot.proc is not None else None

    def alive(self, component: str, instance: int | None = None) -> bool:
        """True when at least one process of ``component`` (of its ``instance`` when
        given) is running."""
        record = self._components.get(component)
        return record is not None and any(
            s.proc is not None and s.proc.poll() is None for s in record.slots
            if instance is None or s.instance == instance)

    def restarts(self, component: str) -> int:
        """How many times a process of ``component`` was scheduled for a restart."""
        record = self._components.get(component)
        return record.restarts if record is not None else 0

    def pids(self, component: str, instance: int | None = None) -> list[int]:
        """The process ids of ``component``'s running processes (of its ``instance`` when
        given), by instance and worker number."""
        record = self._components.get(component)
        slots = record.slots if record is not None else []
        return [s.proc.pid for s in slots if s.proc is not None
                and (instance is None or s.instance == instance)]

    def _instances(self, name: str, record: _Record) -> list[dict[str, Any]]:
        return [{"instance": number, "port": info.port, "workers": info.workers,
                 "restarts": info.restarts, "last_exit": info.last_exit,
                 "last_exit_at": info.last_exit_at, "last_restart_at": info.last_restart_at,
                 "pids": self.pids(name, number)}
                for number, info in sorted(record.instances.items())]

    def status(self) -> dict[str, Any]:
        """``{"pid", "stopping", "updated_at", "components": {name: {...}}}`` (JSON-able).

        Each component: totals over its instances (``workers``, ``restarts``, ``last_exit``,
        ``last_exit_at``, ``pids``) and ``instances``, one entry per instance with the same
        fields of its own plus ``instance``, ``port`` and ``last_restart_at``.
        """
        return {
            "pid": os.getpid(),
            "stopping": self._stopping,
            "updated_at": time.time(),
            "components": {
                name: {"workers": r.workers, "restarts": r.restarts,
                       "last_exit": r.last_exit, "last_exit_at": r.last_exit_at,
                       "pids": self.pids(name), "instances": self._instances(name, r)}
                for name, r in self._components.items()
            },
        }

    def write_status(self) -> None:
        """Rewrite the status file (atomically: a reader never sees half of it)."""
        if self._status_path is None:
            return
        path = self._status_path
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.status(), indent=2) + "\n")
            os.replace(tmp, path)
        except OSError as exc:  # a status file must never stop the platform
            print(f"charter: cannot write {path}: {exc}", file=sys.stderr, flush=True)

    # -- stopping -------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """From now on nothing is restarted (safe to call from a signal handler)."""
        self._stopping = True

    def shutdown(self, grace: float = 8.0) -> None:
        """SIGTERM every running process, SIGKILL what still runs after ``grace`` s."""
        self.begin_shutdown()
        procs = [s.proc for r in self._components.values() for s in r.slots
                 if s.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = self._clock() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - self._clock()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for record in self._components.values():
            for slot in record.slots:
                if slot.proc is not None and slot.on_exit is not None:
                    slot.on_exit(slot.proc.pid)
                slot.proc = None
        self.write_status()

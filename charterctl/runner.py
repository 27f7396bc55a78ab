"""``charter up``: migrate, seed and run the platform's processes in the foreground.

Each component runs as its own uvicorn process (as in production, where each is its
own container), or as several worker processes on the same port when
:mod:`charterctl.workers` gives it more than one (``CHARTER_WORKERS``, default one per
core; auth always one): each worker binds the port with ``SO_REUSEPORT`` and the kernel
spreads connections over them (:func:`charter.serve.reuseport_listener`). A component with several
workers gets an empty ``<var>/metrics/<component>`` directory as
``PROMETHEUS_MULTIPROC_DIR``, so its ``/metrics`` sums every worker. The runner waits
for each one's ``/health/ready``, prints where everything is, and on Ctrl-C (SIGINT) or
SIGTERM stops every child cleanly. Meanwhile :mod:`charterctl.supervisor` restarts any
child that exits, with an exponential back-off, while the others keep serving; only a
component that keeps crashing at start-up stops everything (exit code 1, the component
named). Restarts are logged and counted in ``<var>/supervisor.json``
(``docs/operations.md``, *Supervision*). ``--replicas`` runs several instances of a service,
each on its own port with its usual workers (:mod:`charterctl.replicas`;
``docs/operations.md``, *Replicas and failover*).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import multiprocess

from charter import config, serve
from charter.db import Database, ensure_database
from charter.migrations import upgrade
from charter.observability import logfile
from charterctl import pki, registry, replicas, supervisor, workers
from charterctl.registry import Component

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def normalise_workers_env() -> int:
    """Resolve ``CHARTER_WORKERS`` (``auto`` = the cores) in this process's environment.

    The shared settings parse it as a number; ``auto`` is the runner's word for "ask the
    machine". Returns the requested count; :class:`config.ConfigError` when invalid.
    """
    count = workers.requested()
    if workers.ENV in os.environ:
        os.environ[workers.ENV] = str(count)
    return count


def check_config(components: Iterable[Component]) -> list[str]:
    """Every component's configuration problems (empty when all of them may start).

    Each component's ``settings.load_config()`` parses and checks its environment the way
    the component does when it starts, with the worker count it will get
    (``CHARTER_WORKERS=N``).
    """
    try:
        normalise_workers_env()
    except config.ConfigError as exc:
        return [str(exc)]
    problems: list[str] = []
    for comp in components:
        module = importlib.import_module(f"{comp.package}.settings")
        try:
            with workers.environment({workers.ENV: str(worker_count(comp))}):
                module.load_config()
        except config.ConfigError as exc:
            problems.append(str(exc))
    return problems


def migrate(components: Iterable[Component], *, seed: bool) -> list[str]:
    """Create (PostgreSQL), migrate and optionally seed each component's database.

    Demo data is loaded only in development mode; outside it only auth's seed runs (it
    registers the OAuth clients whose secrets are set, never demo users). Returns
    human-readable lines about what was seeded (development credentials included).
    """
    lines: list[str] = []
    for comp in components:
        if not comp.has_database:
            continue
        url = config.database_url(comp.name)
        ensure_database(url)
        upgrade(comp.name, comp.migrations_dir, url)
        wanted = seed and (config.is_development() or comp.name == "auth")
        seed_fn = comp.seed_function() if wanted else None
        if seed_fn is not None:
            db = Database(url)
            try:
                result = seed_fn(db)
            finally:
                db.dispose()
            lines.extend(_describe_seed(comp.name, result))
    return lines


def _describe_seed(name: str, result: object) -> list[str]:
    if isinstance(result, dict):
        out = [f"  {name}:"]
        for key, value in result.items():
            out.append(f"    {key}: {value}")
        return out
    if isinstance(result, int):
        return [f"  {name}: {result} demo records"]
    return []


def worker_count(comp: Component) -> int:
    """The worker processes ``comp`` runs (:func:`charterctl.workers.workers_for`)."""
    return workers.workers_for(comp.name)


def command(comp: Component, count: int | None = None,
            port: int | None = None) -> list[str]:
    """The command line of one process of ``comp`` with ``count`` workers (default:
    :func:`worker_count`) on ``port`` (default: its own; another for a replica instance);
    start it with :func:`child_env`'s environment.

    One worker: uvicorn's own command line. Several: ``python -m charter.serve worker``,
    started ``count`` times; each binds the port with ``SO_REUSEPORT`` so the kernel
    spreads connections over the workers (:func:`charter.serve.reuseport_listener`).
    """
    normalise_workers_env()
    count = worker_count(comp) if count is None else count
    host = config.env("CHARTER_HOST", "127.0.0.1") or "127.0.0.1"
    port = comp.port if port is None else port
    if count > 1:
        return [sys.executable, "-m", "charter.serve", "worker", comp.name,
                comp.asgi_factory, host, str(port)]
    return [
        sys.executable, "-m", "uvicorn", "--factory", comp.asgi_factory,
        "--host", host, "--port", str(port),
        "--no-access-log", "--log-level", "warning",
        "--timeout-graceful-shutdown", "5",
        *serve.uvicorn_keepalive_args(),  # longer than the gateway's pool keeps one idle
        *serve.uvicorn_proxy_args(comp.name),
        *serve.uvicorn_tls_args(comp.name),
    ]


def metrics_dir(comp: Component, instance: int = 1) -> Path:
    """``<var>/metrics/<component>`` (``<component>.<k>`` for instance k ≥ 2): the
    multiprocess metrics files of one instance's workers (each instance has its own
    ``/metrics``)."""
    name = comp.name if instance == 1 else f"{comp.name}.{instance}"
    return config.var_dir() / "metrics" / name


def child_env(comp: Component, count: int,
              instance: replicas.Instance | None = None, instances: int = 1) -> dict[str, str]:
    """The environment of ``comp``'s process: ours, ``serve.service_env``,
    ``CHARTER_WORKERS=count``, with several instances ``CHARTER_INSTANCE`` and
    ``CHARTER_REPLICAS`` (:func:`charterctl.replicas.instance_env`) and, with several
    workers, ``PROMETHEUS_MULTIPROC_DIR`` (emptied here: files of a previous run would be
    summed in)."""
    env = {**os.environ, **serve.service_env(comp.name), workers.ENV: str(count)}
    env.pop(MULTIPROC_ENV, None)  # one directory per instance, never an inherited one
    for name in (replicas.INSTANCE_ENV, replicas.REPLICAS_ENV):
        env.pop(name, None)
    number = instance.number if instance is not None else 1
    if instances > 1 and instance is not None:
        env.update(replicas.instance_env(instance, instances))
    if count > 1:
        directory = metrics_dir(comp, number)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        env[MULTIPROC_ENV] = str(directory)
    return env


STATUS_FILE = "supervisor.json"
READY_TIMEOUT = 90.0  # seconds for a batch of components to answer /health/ready
READY_TIMEOUT_ENV = "CHARTER_READY_TIMEOUT"  # overrides it (a loaded CI machine)
POLL_INTERVAL = 0.3


def status_path() -> Path:
    """``<var>/supervisor.json``: each component's restarts, last exit and pids."""
    return config.var_dir() / STATUS_FILE


LOGS_DIR = "logs"


def log_file(component: str, worker: int) -> Path:
    """``<var>/logs/<component>.<worker>.jsonl``: one worker's JSON log lines (its own
    file: processes never share one), read by ``charter logs`` (:mod:`charterctl.logs`).
    Workers are numbered across instances: with 2 workers, instance 2's are 3 and 4."""
    return config.var_dir() / LOGS_DIR / f"{component}.{worker}.jsonl"


def _spawners(comp: Component, count: int, instance: replicas.Instance | None = None,
              instances: int = 1) -> list[supervisor.Spawn]:
    """One ``spawn`` per worker of ``comp`` (of its ``instance``, default the first): the
    same command and environment every time (a restarted worker reuses the port, its log
    file and the metrics directory, which is emptied once); each worker's
    ``CHARTER_LOG_FILE`` is its own :func:`log_file`."""
    port = instance.port if instance is not None else None
    argv, env = command(comp, count, port), child_env(comp, count, instance, instances)
    first = ((instance.number if instance is not None else 1) - 1) * count

    def spawner(worker: int) -> supervisor.Spawn:
        worker_env = {**env, logfile.LOG_FILE_ENV: str(log_file(comp.name, first + worker))}

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(argv, env=worker_env)

        return spawn

    return [spawner(worker) for worker in range(1, count + 1)]


def metrics_reaper(comp: Component, count: int,
                   instance: int = 1) -> Callable[[int], None] | None:
    """``on_exit`` for ``comp``'s processes: mark an exited worker's multiprocess metrics
    dead (its ``live*`` gauges leave the sum; a killed worker cannot do it itself).
    ``None`` with one worker (no multiprocess directory)."""
    if count < 2:
        return None
    directory = str(metrics_dir(comp, instance))

    def mark_dead(pid: int) -> None:
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, directory)

    return mark_dead


def ready_timeout() -> float:
    """Seconds a batch of components may take to become ready: ``CHARTER_READY_TIMEOUT``
    (a number > 0), else :data:`READY_TIMEOUT`."""
    raw = config.env(READY_TIMEOUT_ENV)
    if not raw:
        return READY_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise config.ConfigError(f"{READY_TIMEOUT_ENV} must be a number of seconds > 0, "
                                 f"not {raw!r}")
    return value


def _await_ready(sup: supervisor.Supervisor, batch: list[Component],
                 stopping: Callable[[], bool], timeout: float = READY_TIMEOUT,
                 plan: dict[str, list[replicas.Instance]] | None = None) -> None:
    """Supervise until every instance of every component of ``batch`` answers
    ``/health/ready`` (``plan``: the instances; default one per component).

    A process that exits meanwhile is restarted (:meth:`Supervisor.check`), so a crash
    loop raises :class:`supervisor.CrashLoop`; RuntimeError when time runs out.
    """
    plan = plan or {}
    pending: dict[tuple[str, int], tuple[str, str]] = {}
    for c in batch:
        for inst in plan.get(c.name) or replicas.instances(c.name, 1):
            pending[(c.name, inst.number)] = (inst.label, f"{inst.url}/health/ready")
    deadline = time.monotonic() + timeout
    while pending and not stopping():
        sup.check()
        for (name, number), (_label, url) in list(pending.items()):
            # presents the charter-cli certificate on mTLS
            if sup.alive(name, number) and serve.probe(url, timeout=1.0):
                del pending[(name, number)]
        if pending and time.monotonic() >= deadline:
            labels = ", ".join(label for label, _url in pending.values())
            raise RuntimeError(f"{labels} not ready after {timeout:.0f}s")
        if pending:
            time.sleep(0.2)


def declare_topology() -> str:
    """Declare every consumer's queue, bindings, delay queues and DLQ on the broker before
    any component starts: an event published before its consumer first ran is then kept
    in that queue instead of being dropped as unroutable (RabbitMQ drops what no queue is
    bound for). Returns a line for the console; never raises for a broker that is down
    (each consumer declares its own queues when it starts, as before)."""
    from charter.messaging.broker import Broker, BrokerUnavailable

    subscriptions = registry.consumer_subscriptions()
    try:
        broker = Broker.from_config()
    except config.ConfigError as exc:
        return f"messaging: not declared: {exc}"
    try:
        for sub in subscriptions:
            broker.declare(sub)
    except BrokerUnavailable as exc:
        return (f"messaging: broker unavailable ({exc}); each consumer declares its queues "
                "when it starts")
    finally:
        broker.close()
    return (f"messaging: {len(subscriptions)} consumer queues declared on "
            f"{broker.safe_url}")


def up(components: list[Component], *, seed: bool = True, migrate_first: bool = True,
       policy: supervisor.Policy | None = None,
       replica_counts: dict[str, int] | None = None) -> int:
    """Run and supervise the platform until interrupted; returns the process exit code.

    ``replica_counts`` (``--replicas``) runs several instances of those services
    (:mod:`charterctl.replicas`). 0 after Ctrl-C/SIGTERM; 1 when a component keeps
    crashing at start-up (:class:`supervisor.CrashLoop`) or never becomes ready; 2 for a
    bad worker count or replica plan.
    """
    try:
        normalise_workers_env()
        plan = replicas.plan([c.name for c in components], replica_counts or {})
        timeout = ready_timeout()
    except (config.ConfigError, replicas.ReplicaError) as exc:
        print(f"charter: {exc}", file=sys.stderr, flush=True)
        return 2
    os.environ.update(replicas.urls_env(plan))  # every process started from now on
    pki.ensure_pki()  # first start: a development CA and one certificate per service
    seeded = migrate(components, seed=seed) if migrate_first else []
    print(f"charter: {declare_topology()}", flush=True)
    sup = supervisor.Supervisor(policy, status_path=status_path())
    sup.write_status()  # nothing running yet: never a previous run's pids
    stopping = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        sup.begin_shutdown()  # children that exit from now on are not restarted

    old_int = signal.signal(signal.SIGINT, _on_signal)
    old_term = signal.signal(signal.SIGTERM, _on_signal)
    try:
        # auth first (every other process fetches its JWKS at start), then the rest at once
        first = [c for c in components if c.name == "auth"]
        rest = [c for c in components if c.name != "auth"]
        for batch in (first, rest):
            for comp in batch:
                if stopping:
                    break
                count = worker_count(comp)
                group = plan[comp.name]
                for inst in group:
                    reaper = metrics_reaper(comp, count, inst.number)
                    for spawn in _spawners(comp, count, inst, len(group)):
                        sup.start(comp.name, spawn, on_exit=reaper, instance=inst.number,
                                  port=inst.port)
            _await_ready(sup, batch, lambda: stopping, timeout, plan=plan)
        if not stopping:
            _banner(components, seeded, plan)
        while not stopping:
            sup.check()
            due = sup.next_restart_in()
            time.sleep(POLL_INTERVAL if due is None else min(POLL_INTERVAL, max(0.05, due)))
        print("charter: stopping…", flush=True)
        return 0
    except (supervisor.SupervisionError, RuntimeError) as exc:
        print(f"charter: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        sup.shutdown()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _banner(components: list[Component], seeded: list[str],
            plan: dict[str, list[replicas.Instance]] | None = None) -> None:
    print("\nCharter is up.\n", flush=True)
    names = {c.name for c in components}
    gateway = config.service_url("gateway")
    for comp in components:
        base = config.service_url(comp.name)
        if comp.name == "gateway":
            extra = "   portal: " + gateway + "/"
        elif comp.name == "auth":
            extra = ""
        elif config.uses_mtls(comp.name) and "gateway" in names:
            extra = f"   Swagger UI: {gateway}/{comp.name}/v1/ui/ (mTLS inside)"
        elif config.uses_mtls(comp.name):
            extra = "   (mTLS only: reach it through the gateway)"
        else:
            extra = f"   Swagger UI: {base}/v1/ui/"
        count = worker_count(comp)
        plural = f"   ({count} workers)" if count > 1 else ""
        print(f"  {comp.name:<14} {base}{extra}{plural}")
        for inst in (plan or {}).get(comp.name, [])[1:]:
            print(f"  {inst.label:<14} {inst.url}   (instance {inst.number}){plural}")
    if seeded:
        print("\nDemo data (development mode; secrets under var/secrets/):")
        for line in seeded:
            print(line)
    token = "charter --dev token" if config.is_development() else "charter token"
    print(f"\nGet a token:  .venv/bin/{token} --client demo-cli")
    print("Stop:         Ctrl-C\n", flush=True)

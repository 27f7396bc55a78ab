"""Worker processes: the count policy (``charterctl.workers``), the runner's command line
and child environment, the cache choice and the multiprocess ``/metrics`` page."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, values
from prometheus_client.parser import text_string_to_metric_families

from charter import cache as cache_module
from charter.cache import NullCache, RedisCache, TTLCache, WorkerSharedCache, make_cache
from charter.config import ConfigError
from charter.observability import metrics_exposition
from charterctl import runner, workers
from charterctl.registry import COMPONENTS

# -- the policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (None, 6), ("", 6), ("auto", 6), (" AUTO ", 6), ("1", 1), ("3", 3), ("12", 12)])
def test_parse_counts_and_auto(value: str | None, expected: int) -> None:
    assert workers.parse(value, cores=6) == expected


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_parse_refuses_anything_else(value: str) -> None:
    with pytest.raises(ConfigError, match="CHARTER_WORKERS"):
        workers.parse(value, cores=4)


def test_auto_is_the_cores_this_process_may_use() -> None:
    assert workers.requested({}, cores=None) == workers.available_cores() >= 1


def test_services_get_the_count_auth_one() -> None:
    for name in ("catalog", "cart", "orders", "payments", "exchange", "loyalty",
                 "notifications"):
        assert workers.component_workers(name, 4) == 4
    assert workers.component_workers("auth", 4) == 1


def test_gateway_follows_its_policy_and_is_one_without_it() -> None:
    assert workers.component_workers("gateway", 4, None) == 1
    assert workers.component_workers("gateway", 4, lambda cores: cores) == 4
    assert workers.component_workers("gateway", 4, lambda cores: 1) == 1
    assert workers.component_workers("gateway", 2, lambda cores: 64) == 2  # never more


def test_gateway_policy_sees_a_numeric_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    seen: list[str | None] = []

    def policy(cores: int) -> int:
        seen.append(os.environ.get("CHARTER_WORKERS"))
        return cores

    monkeypatch.setenv("CHARTER_WORKERS", "auto")
    assert workers.component_workers("gateway", 3, policy) == 3
    assert seen == ["3"] and os.environ["CHARTER_WORKERS"] == "auto"  # restored


def test_real_gateway_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("CHARTER_WORKERS", "2")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT", "100")
    assert workers.workers_for("gateway") == 1  # in-process buckets: one process
    monkeypatch.setenv("GATEWAY_RATE_LIMIT", "0")
    assert workers.workers_for("gateway") == 2


# -- the runner ---------------------------------------------------------------------------


@pytest.fixture
def runner_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CHARTER_MTLS", "0")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT", "100")
    for name in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR", "CHARTER_SERVICE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "var"


def worker_argv(name: str) -> list[str]:
    comp = COMPONENTS[name]
    return [sys.executable, "-m", "charter.serve", "worker", name, comp.asgi_factory,
            "127.0.0.1", str(comp.port)]


def test_command_passes_the_count(runner_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHARTER_HOST", raising=False)
    monkeypatch.setenv("CHARTER_WORKERS", "3")
    assert runner.worker_count(COMPONENTS["catalog"]) == 3
    # several workers: one `charter.serve worker` command, started 3 times (SO_REUSEPORT)
    assert runner.command(COMPONENTS["catalog"]) == worker_argv("catalog")
    assert runner.worker_count(COMPONENTS["auth"]) == 1
    assert runner.command(COMPONENTS["auth"])[1:3] == ["-m", "uvicorn"]
    assert runner.worker_count(COMPONENTS["gateway"]) == 1  # rate limit, no Redis
    monkeypatch.setenv("CHARTER_WORKERS", "1")
    argv = runner.command(COMPONENTS["catalog"])
    assert argv[1:3] == ["-m", "uvicorn"] and "--workers" not in argv


def test_command_defaults_to_the_cores(runner_env: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_WORKERS", "auto")
    assert runner.worker_count(COMPONENTS["orders"]) == workers.available_cores()
    monkeypatch.delenv("CHARTER_WORKERS")
    assert runner.worker_count(COMPONENTS["orders"]) == workers.available_cores()


def test_child_env_gives_each_multi_worker_component_a_fresh_metrics_dir(
        runner_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = runner_env / "metrics" / "catalog" / "counter_4242.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old run")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/somewhere/inherited")

    env = runner.child_env(COMPONENTS["catalog"], 2)
    assert env["CHARTER_WORKERS"] == "2" and env["CHARTER_SERVICE"] == "catalog"
    directory = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    assert directory == runner_env / "metrics" / "catalog"
    assert directory.is_dir() and list(directory.iterdir()) == []

    single = runner.child_env(COMPONENTS["auth"], 1)
    assert single["CHARTER_WORKERS"] == "1" and "PROMETHEUS_MULTIPROC_DIR" not in single


def test_check_config_accepts_auto_and_refuses_nonsense(
        runner_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "development")
    monkeypatch.setenv("CHARTER_WORKERS", "auto")
    assert runner.check_config([COMPONENTS["catalog"], COMPONENTS["gateway"]]) == []
    monkeypatch.setenv("CHARTER_WORKERS", "lots")
    problems = runner.check_config([COMPONENTS["catalog"]])
    assert len(problems) == 1 and "CHARTER_WORKERS" in problems[0]


# -- the cache ----------------------------------------------------------------------------


@pytest.fixture
def no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setattr(cache_module, "_announced", set())


def test_one_worker_keeps_the_in_process_cache(no_redis: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHARTER_WORKERS", raising=False)
    assert isinstance(make_cache("catalog"), TTLCache)
    monkeypatch.setenv("CHARTER_WORKERS", "1")
    assert isinstance(make_cache("catalog"), TTLCache)


def test_several_workers_without_redis_share_namespace_versions(
        no_redis: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CHARTER_WORKERS", "2")
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="charter.cache"):
        cache = make_cache("catalog")
        make_cache("catalog")
    assert isinstance(cache, WorkerSharedCache)
    assert cache.versions.path == tmp_path / "cache" / "catalog.versions"
    said = [r.getMessage() for r in caplog.records if r.name == "charter.cache"]
    assert len(said) == 1 and "WorkerSharedCache" in said[0] and "CHARTER_WORKERS=2" in said[0]


def test_several_workers_without_a_usable_var_dir_cache_nothing(
        no_redis: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("CHARTER_WORKERS", "2")
    monkeypatch.setenv("CHARTER_VAR_DIR", str(blocker))
    assert isinstance(make_cache("catalog"), NullCache)
    # entries that only expire may stay per worker
    assert isinstance(make_cache("exchange", 60, write_invalidated=False), TTLCache)


def test_several_workers_with_redis_share_it(no_redis: None,
                                             monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CHARTER_WORKERS", "4")
    monkeypatch.setenv("REDIS_URL", "redis://:sekret@127.0.0.1:6379/15")
    with caplog.at_level(logging.INFO, logger="charter.cache"):
        assert isinstance(make_cache("catalog"), RedisCache)
    assert "sekret" not in caplog.text and "RedisCache" in caplog.text


def test_null_cache_misses_and_namespaces_fall_through() -> None:
    cache = NullCache()
    cache.set("k", {"a": 1})
    assert cache.get("k") is None
    assert cache.get_or_load("k", lambda: {"a": 2}) == {"a": 2}
    assert cache.get("k") is None  # still nothing kept
    cache.delete("k")
    cache.invalidate_prefix("")
    cache.clear()
    assert cache.incr("n") == 0 and cache.counter("n") is None
    ns = cache.namespace("product")
    loads: list[int] = []

    def load() -> dict[str, int]:
        loads.append(1)
        return {"id": len(loads)}

    assert ns.get_or_load("1", load) == {"id": 1}
    ns.invalidate()
    assert ns.get_or_load("1", load) == {"id": 2}  # every read reaches the loader
    assert ns.get("1") is None


# -- the multiprocess /metrics page -------------------------------------------------------


@pytest.fixture
def multiproc_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """PROMETHEUS_MULTIPROC_DIR for this test; metrics created meanwhile use mmap files."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    original = values.ValueClass
    yield directory
    values.ValueClass = original


def as_worker(pid: int) -> None:
    """Metrics created from now on write the files of process ``pid``."""
    values.ValueClass = values.MultiProcessValue(lambda: pid)


def samples(page: bytes, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(page.decode()):
        for s in family.samples:
            if s.name == name:
                found[tuple(sorted(s.labels.items()))] = s.value
    return found


def test_exposition_sums_every_worker_once(multiproc_dir: Path) -> None:
    registries = []
    for pid, count in ((1001, 3), (1002, 4)):
        as_worker(pid)
        registry = CollectorRegistry()  # one per worker, like each app's
        requests = Counter("charter_http_requests_total", "requests", ["operation"],
                           registry=registry)
        requests.labels("get_product").inc(count)
        registries.append(registry)
    assert sorted(p.name for p in multiproc_dir.iterdir()) == ["counter_1001.db",
                                                               "counter_1002.db"]

    page, content_type = metrics_exposition.exposition(registries[1])
    assert content_type.startswith("text/plain")
    totals = samples(page, "charter_http_requests_total")
    assert totals == {(("operation", "get_product"),): 7.0}  # not 7 + 4 (double counting)


def test_live_gauges_of_a_dead_worker_leave_the_sum(multiproc_dir: Path) -> None:
    for pid, value in ((2001, 2), (2002, 5)):
        as_worker(pid)
        Gauge("charter_in_flight", "in flight", registry=CollectorRegistry(),
              multiprocess_mode="livesum").set(value)
    page, _ = metrics_exposition.exposition(CollectorRegistry())
    assert samples(page, "charter_in_flight") == {(): 7.0}
    metrics_exposition._mark_dead(2001, str(multiproc_dir))
    page, _ = metrics_exposition.exposition(CollectorRegistry())
    assert samples(page, "charter_in_flight") == {(): 5.0}


def test_one_process_serves_its_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    registry = CollectorRegistry()
    Counter("only_here_total", "x", registry=registry).inc(2)
    page, _ = metrics_exposition.exposition(registry)
    assert samples(page, "only_here_total") == {(): 2.0}
    assert metrics_exposition.mark_dead_at_exit() is False


def test_mark_dead_at_exit_registers_once_per_process(
        multiproc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list[tuple[object, ...]] = []
    monkeypatch.setattr(metrics_exposition.atexit, "register",
                        lambda *args: registered.append(args))
    monkeypatch.setattr(metrics_exposition, "_registered_pid", None)
    assert metrics_exposition.mark_dead_at_exit() is True
    assert metrics_exposition.mark_dead_at_exit() is True
    assert len(registered) == 1

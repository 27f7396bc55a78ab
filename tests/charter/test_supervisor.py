"""The process manager of ``charter up`` (``charterctl.supervisor``) with fake processes
and a settable clock: back-off, crash-loop detection, restart accounting, shutdown.

The real thing (kill -9 of catalog's workers on a running platform) is in
``tests/integration/test_supervision.py``.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest

from charter import serve
from charterctl import supervisor
from charterctl.supervisor import CrashLoop, Policy, Supervisor, describe_exit
from tests.support.clocks import SettableClock

_pids = itertools.count(1000)


class FakeProc:
    """A Popen-like child that runs until a test ends it."""

    def __init__(self, *, ignores_sigterm: bool = False) -> None:
        self.pid = next(_pids)
        self.returncode: int | None = None
        self.ignores_sigterm = ignores_sigterm
        self.terminated = self.killed = False

    def poll(self) -> int | None:
        return self.returncode

    def exit(self, code: int) -> None:
        self.returncode = code

    def terminate(self) -> None:
        self.terminated = True
        if not self.ignores_sigterm:
            self.returncode = 0

    def kill(self) -> None:
        self.killed = True
        self.returncode = -9

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            raise subprocess.TimeoutExpired("fake", timeout or 0)
        return self.returncode


class Factory:
    """``spawn`` for one component: every process it started, in order."""

    def __init__(self) -> None:
        self.started: list[FakeProc] = []

    def __call__(self) -> FakeProc:
        proc = FakeProc()
        self.started.append(proc)
        return proc


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def sup(clock: SettableClock, lines: list[str], tmp_path: Path) -> Supervisor:
    return Supervisor(clock=clock.monotonic, log=lines.append,
                      status_path=tmp_path / "var" / "supervisor.json")


def crash_and_restart(sup: Supervisor, clock: SettableClock, factory: Factory,
                      code: int = 1, uptime: float = 0.0) -> float:
    """End the newest process after ``uptime`` s; return the back-off it got (and run it)."""
    clock.advance(uptime)
    factory.started[-1].exit(code)
    sup.check()
    delay = sup.next_restart_in()
    assert delay is not None
    clock.advance(delay)
    sup.check()
    return delay


def test_backoff_doubles_from_half_a_second_and_is_capped() -> None:
    policy = Policy()
    assert [policy.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert Policy(initial_delay=1, max_delay=5).delay(10) == 5


def test_a_crashed_process_is_restarted_after_the_backoff_and_the_others_keep_running(
        sup: Supervisor, clock: SettableClock, lines: list[str]) -> None:
    catalog, exchange = Factory(), Factory()
    sup.start("catalog", catalog, 2)
    sup.start("exchange", exchange, 1)
    clock.advance(60)
    first, second = catalog.started
    first.exit(-9)
    sup.check()

    assert lines == ["catalog[worker 1] exited with -9 (SIGKILL); "
                     "restarting in 0.5s (restart #1)"]
    assert sup.pids("catalog") == [second.pid] and sup.alive("catalog")
    assert not second.terminated and not exchange.started[0].terminated
    assert sup.next_restart_in() == 0.5

    clock.advance(0.4)
    sup.check()
    assert len(catalog.started) == 2  # not before the back-off is over
    clock.advance(0.1)
    sup.check()
    assert len(catalog.started) == 3
    assert sup.pids("catalog") == [catalog.started[2].pid, second.pid]  # same worker slot
    assert lines[-1] == f"catalog[worker 1] restarted (pid {catalog.started[2].pid})"
    assert sup.restarts("catalog") == 1 and sup.restarts("exchange") == 0
    assert sup.next_restart_in() is None


def test_backoff_grows_with_crashes_in_a_row_and_resets_after_a_stable_run(
        sup: Supervisor, clock: SettableClock, lines: list[str]) -> None:
    catalog = Factory()
    sup.start("catalog", catalog)
    clock.advance(60)  # established: these crashes are not start-up crashes
    delays = [crash_and_restart(sup, clock, catalog, uptime=12) for _ in range(4)]
    assert delays == [0.5, 1, 2, 4]
    # up 30 s or more: the next crash starts the sequence again
    assert crash_and_restart(sup, clock, catalog, uptime=30) == 0.5
    assert crash_and_restart(sup, clock, catalog, uptime=12) == 1
    assert sup.restarts("catalog") == 6
    assert [line.rsplit("(restart #", 1)[1] for line in lines if "exited" in line] == [
        "1)", "2)", "3)", "4)", "5)", "6)"]


def test_each_worker_has_its_own_backoff_and_the_component_counts_all_restarts(
        sup: Supervisor, clock: SettableClock, lines: list[str]) -> None:
    catalog = Factory()
    sup.start("catalog", catalog, 2)
    clock.advance(60)
    one, two = catalog.started
    one.exit(1)
    sup.check()
    clock.advance(0.5)
    sup.check()  # worker 1 restarted
    clock.advance(20)
    two.exit(-15)
    catalog.started[2].exit(1)
    sup.check()
    assert lines[-2:] == [
        "catalog[worker 1] exited with 1; restarting in 1s (restart #2)",
        "catalog[worker 2] exited with -15 (SIGTERM); restarting in 0.5s (restart #3)",
    ]
    assert sup.pids("catalog") == [] and not sup.alive("catalog")


def test_a_component_crashing_at_startup_five_times_in_a_row_stops_with_its_name(
        sup: Supervisor, clock: SettableClock, lines: list[str]) -> None:
    catalog, auth = Factory(), Factory()
    sup.start("auth", auth)
    sup.start("catalog", catalog)
    for _ in range(4):
        crash_and_restart(sup, clock, catalog, code=1, uptime=0.8)
    clock.advance(0.8)
    catalog.started[-1].exit(1)
    with pytest.raises(CrashLoop) as caught:
        sup.check()
    assert caught.value.component == "catalog" and caught.value.returncode == 1
    assert str(caught.value) == ("catalog keeps crashing at start-up (last exit code 1; "
                                 "5 times in a row); see its log above")
    assert len(catalog.started) == 5 and sup.restarts("catalog") == 4
    assert lines[-1] == "catalog[worker 1] exited with 1"


def test_exit_code_3_is_restarted_like_any_start_up_crash_and_named_when_it_loops(
        sup: Supervisor, clock: SettableClock) -> None:
    assert supervisor.STARTUP_FAILURE == serve.STARTUP_FAILURE
    catalog = Factory()
    sup.start("catalog", catalog)
    assert crash_and_restart(sup, clock, catalog, code=3) == 0.5  # a port in use can heal
    for _ in range(3):
        crash_and_restart(sup, clock, catalog, code=3)
    catalog.started[-1].exit(3)
    with pytest.raises(CrashLoop, match=r"exit code 3: failed before serving: a configuration "
                                        r"error, or its port in use; 5 times in a row"):
        sup.check()


def test_a_process_that_got_past_start_up_resets_the_crash_loop_count(
        sup: Supervisor, clock: SettableClock) -> None:
    catalog = Factory()
    sup.start("catalog", catalog)
    for _ in range(4):
        crash_and_restart(sup, clock, catalog, uptime=1)
    crash_and_restart(sup, clock, catalog, uptime=10)  # up for the whole window: not counted
    for _ in range(4):
        crash_and_restart(sup, clock, catalog, uptime=1)
    assert sup.restarts("catalog") == 9  # still supervised, no CrashLoop
    catalog.started[-1].exit(1)
    with pytest.raises(CrashLoop):
        sup.check()


def test_nothing_is_restarted_once_shutdown_began(
        sup: Supervisor, clock: SettableClock, lines: list[str]) -> None:
    catalog = Factory()
    sup.start("catalog", catalog, 2)
    catalog.started[0].exit(1)
    sup.check()
    sup.begin_shutdown()  # what the SIGINT/SIGTERM handler does
    catalog.started[1].exit(-2)  # Ctrl-C reached the children too
    clock.advance(60)
    sup.check()
    assert len(catalog.started) == 2 and len(lines) == 1


def test_shutdown_terminates_then_kills_what_ignores_sigterm(
        sup: Supervisor, clock: SettableClock, tmp_path: Path) -> None:
    stubborn = FakeProc(ignores_sigterm=True)
    polite = Factory()
    reaped: list[int] = []
    sup.start("auth", polite)
    sup.start("catalog", lambda: stubborn, on_exit=reaped.append)
    sup.shutdown(grace=0)
    assert polite.started[0].terminated and not polite.started[0].killed
    assert stubborn.terminated and stubborn.killed
    assert reaped == [stubborn.pid]  # its metrics are marked dead
    status = json.loads((tmp_path / "var" / "supervisor.json").read_text())
    assert status["stopping"] is True
    assert status["components"]["catalog"]["pids"] == []


def test_on_exit_runs_for_every_process_that_ended(
        sup: Supervisor, clock: SettableClock) -> None:
    reaped: list[int] = []
    catalog = Factory()
    sup.start("catalog", catalog, 2, on_exit=reaped.append)
    catalog.started[1].exit(-9)
    sup.check()
    assert reaped == [catalog.started[1].pid]


def test_status_file_counts_restarts_and_names_pids_and_last_exit(
        sup: Supervisor, clock: SettableClock, tmp_path: Path) -> None:
    path = tmp_path / "var" / "supervisor.json"
    catalog, exchange = Factory(), Factory()
    sup.start("catalog", catalog, 2)
    sup.start("exchange", exchange)

    def read() -> dict[str, dict[str, object]]:
        components: dict[str, dict[str, object]] = json.loads(path.read_text())["components"]
        return components

    pids = [p.pid for p in catalog.started]
    assert read()["catalog"] == {"workers": 2, "restarts": 0, "last_exit": None,
                                 "last_exit_at": None, "pids": pids,
                                 "instances": [{"instance": 1, "port": None, "workers": 2,
                                                "restarts": 0, "last_exit": None,
                                                "last_exit_at": None,
                                                "last_restart_at": None, "pids": pids}]}
    clock.advance(60)
    crash_and_restart(sup, clock, catalog, code=-9)
    got = read()["catalog"]
    assert got["restarts"] == 1 and got["last_exit"] == -9
    assert got["pids"] == [catalog.started[0].pid, catalog.started[2].pid]
    assert read()["exchange"]["restarts"] == 0
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, nothing left over


def test_status_file_that_cannot_be_written_does_not_stop_supervision(
        clock: SettableClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    sup = Supervisor(clock=clock.monotonic, log=lambda _: None,
                     status_path=blocker / "supervisor.json")
    sup.start("catalog", Factory())
    assert sup.alive("catalog")
    assert "cannot write" in capsys.readouterr().err


def test_describe_exit() -> None:
    assert describe_exit(0) == "0"
    assert describe_exit(1) == "1"
    assert describe_exit(-9) == "-9 (SIGKILL)"
    assert describe_exit(-200) == "-200"


def test_start_refuses_zero_processes(sup: Supervisor) -> None:
    with pytest.raises(ValueError):
        sup.start("catalog", Factory(), 0)


def test_the_runner_marks_a_dead_workers_live_gauges_dead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from charterctl import runner
    from charterctl.registry import COMPONENTS

    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path / "var"))
    directory = runner.metrics_dir(COMPONENTS["catalog"])
    directory.mkdir(parents=True)
    for name in ("gauge_livesum_4242.db", "gauge_livesum_4343.db", "counter_4242.db"):
        (directory / name).write_bytes(b"")
    assert runner.metrics_reaper(COMPONENTS["catalog"], 1) is None  # no multiprocess dir
    reaper = runner.metrics_reaper(COMPONENTS["catalog"], 2)
    assert reaper is not None
    reaper(4242)
    # the dead worker's live gauge leaves the sum; its counters keep counting in totals
    assert sorted(p.name for p in directory.iterdir()) == [
        "counter_4242.db", "gauge_livesum_4343.db"]
    reaper(4242)  # twice (exit seen, then shutdown) is harmless


def test_instances_are_supervised_and_counted_each_on_its_own(
        sup: Supervisor, clock: SettableClock, lines: list[str], tmp_path: Path) -> None:
    """``charter up --replicas catalog=2``: a killed instance is restarted with back-off and
    its restart is counted for it alone; the status file lists each instance."""
    first, second = Factory(), Factory()
    sup.start("catalog", first, instance=1, port=8101)
    sup.start("catalog", second, 2, instance=2, port=8111)
    assert sup.alive("catalog", 2) and sup.pids("catalog", 2) == [p.pid for p in second.started]
    clock.advance(60)
    for proc in second.started:
        proc.exit(-9)
    sup.check()
    assert not sup.alive("catalog", 2) and sup.alive("catalog", 1) and sup.alive("catalog")
    assert "catalog#2[worker 1] exited with -9 (SIGKILL); restarting in 0.5s" in lines[0]
    clock.advance(0.5)
    sup.check()
    assert sup.alive("catalog", 2) and len(second.started) == 4 and len(first.started) == 1
    status = json.loads((tmp_path / "var" / "supervisor.json").read_text())
    catalog = status["components"]["catalog"]
    assert catalog["restarts"] == 2 and catalog["workers"] == 3
    one, two = catalog["instances"]
    assert (one["instance"], one["port"], one["restarts"], one["pids"]) == (
        1, 8101, 0, [first.started[0].pid])
    assert (two["instance"], two["port"], two["workers"], two["restarts"]) == (2, 8111, 2, 2)
    assert two["last_exit"] == -9 and two["last_restart_at"] is not None
    assert two["pids"] == [p.pid for p in second.started[2:]]

"""``charter logs`` (charterctl.logs) and the per-process log files behind it
(charter.observability.logfile, charterctl.runner.log_file), on temporary files."""

from __future__ import annotations

import io
import json
import logging
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from charter import config
from charter.observability import logfile
from charter.observability.logs import JSONFormatter
from charterctl import cli, logs, runner
from charterctl.registry import Component
from charterctl.replicas import Instance

CID = "corr-0123456789abcdef"


def ts(second: float) -> str:
    """A log timestamp ``second`` seconds after 07:00:00 on the test's day."""
    when = datetime(2026, 12, 6, 7, 0, 0, tzinfo=UTC).timestamp() + second
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{round((when % 1) * 1000):03d}Z"


def line(service: str, second: float, message: str, cid: str | None = CID,
         level: str = "info", **extra: Any) -> str:
    doc = {"ts": ts(second), "level": level, "service": service, "logger": "t",
           "message": message, "correlation_id": cid, **extra}
    return json.dumps(doc) + "\n"


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


@pytest.fixture()
def var(tmp_path: Path) -> Path:
    """A var dir with the logs of one checkout: orders (2 workers, worker 1 rotated),
    catalog, payments, loyalty, notifications, plus noise."""
    d = tmp_path / "var" / "logs"
    write(d / "orders.1.jsonl.2", line("orders", 0.0, "POST /v2/orders 202"))
    write(d / "orders.1.jsonl.1", line("orders", 0.3, "saga step reserve", saga_id="o-1"),
          "Traceback (most recent call last):\n",
          line("orders", 0.5, "other request", cid="someone-else"))
    write(d / "orders.1.jsonl", line("orders", 0.9, "saga confirmed", saga_id="o-1",
                                     trace_id="4bf92f3577b34da6a3ce929d0e0e4736"),
          '{"ts": "2026-12-06T07:00:01.5')  # being written: no newline yet
    write(d / "orders.2.jsonl", line("orders", 0.05, "GET /health/ready 200", cid=None))
    write(d / "catalog.1.jsonl", line("catalog", 0.1, "POST /v1/reservations 201"),
          "not json at all\n", line("catalog", 0.6, "POST /v1/reservations/r/commit 200"))
    write(d / "payments.1.jsonl", line("payments", 0.4, "POST /v1/payments 201"),
          line("payments", 0.45, "card declined?", level="warning"))
    write(d / "loyalty.1.jsonl", line("loyalty", 1.0, "points awarded"))
    write(d / "notifications.1.jsonl", line("notifications", 1.1, "e-mail sent",
                                            level="error"))
    write(d / "README.txt", "not a log file\n")
    return tmp_path / "var"


def shown(var: Path, **filters: Any) -> list[tuple[str, str]]:
    """(service, message) of what merged() yields under ``var``."""
    entries = logs.merged(logs.log_dirs([var]), logs.Filter(**filters))
    return [(str(e.doc["service"]), str(e.doc["message"])) for e in entries]


# -- parsing ---------------------------------------------------------------------------------

def test_parse_line_keeps_json_objects_with_a_time_and_nothing_else() -> None:
    entry = logs.parse_line(line("orders", 1.5, "hello").encode())
    assert entry is not None and entry.doc["message"] == "hello"
    assert entry.at == pytest.approx(datetime(2026, 12, 6, 7, 0, 1, 500000, UTC).timestamp())
    for bad in ("", "plain text", "[1, 2]", '{"ts": "yesterday"}', '{"message": "no ts"}',
                '{"ts": "2026-12-06T07:00:01', "{broken json}"):
        assert logs.parse_line(bad) is None, bad


def test_parse_since_durations_and_rfc3339() -> None:
    now = 1_000_000.0
    assert logs.parse_since("10m", now) == now - 600
    assert logs.parse_since("2h", now) == now - 7200
    assert logs.parse_since("30s", now) == now - 30
    assert logs.parse_since("1.5d", now) == now - 1.5 * 86400
    assert logs.parse_since("2026-12-06T08:00:00+01:00") == \
        datetime(2026, 12, 6, 7, 0, tzinfo=UTC).timestamp()
    assert logs.parse_since("2026-12-06T07:00:00Z") == logs.parse_since("2026-12-06 07:00:00")
    for bad in ("10 minutes", "m", "-5m", "soon"):
        with pytest.raises(ValueError):
            logs.parse_since(bad, now)


def test_streams_group_rotated_files_oldest_first(var: Path) -> None:
    found = logs.streams(var / "logs")
    assert sorted(found) == ["catalog.1.jsonl", "loyalty.1.jsonl", "notifications.1.jsonl",
                             "orders.1.jsonl", "orders.2.jsonl", "payments.1.jsonl"]
    assert [p.name for p in found["orders.1.jsonl"]] == [
        "orders.1.jsonl.2", "orders.1.jsonl.1", "orders.1.jsonl"]
    assert logs.component_of("orders.1.jsonl") == "orders"
    assert logs.component_of("notifications.jsonl") == "notifications"
    assert logs.streams(var / "missing") == {}


# -- merging and filtering -------------------------------------------------------------------

def test_one_correlation_id_across_every_service_in_time_order(var: Path) -> None:
    assert shown(var, correlation_id=CID) == [
        ("orders", "POST /v2/orders 202"),
        ("catalog", "POST /v1/reservations 201"),
        ("orders", "saga step reserve"),
        ("payments", "POST /v1/payments 201"),
        ("payments", "card declined?"),
        ("catalog", "POST /v1/reservations/r/commit 200"),
        ("orders", "saga confirmed"),
        ("loyalty", "points awarded"),
        ("notifications", "e-mail sent"),
    ]


def test_everything_is_merged_in_time_order_noise_and_partial_lines_skipped(
        var: Path) -> None:
    entries = list(logs.merged(logs.log_dirs([var]), logs.Filter()))
    assert len(entries) == 11
    times = [e.at for e in entries]
    assert times == sorted(times)
    assert not any("Traceback" in e.raw or "not json" in e.raw for e in entries)


def test_filters_combine(var: Path) -> None:
    assert shown(var, correlation_id=CID, services=frozenset({"catalog", "loyalty"})) == [
        ("catalog", "POST /v1/reservations 201"),
        ("catalog", "POST /v1/reservations/r/commit 200"),
        ("loyalty", "points awarded")]
    assert shown(var, saga_id="o-1") == [("orders", "saga step reserve"),
                                         ("orders", "saga confirmed")]
    assert shown(var, trace_id="4bf92f3577b34da6a3ce929d0e0e4736") == [
        ("orders", "saga confirmed")]
    assert shown(var, level="warning") == [("payments", "card declined?"),
                                           ("notifications", "e-mail sent")]
    since = datetime(2026, 12, 6, 7, 0, 0, 950000, UTC).timestamp()
    assert shown(var, since=since) == [("loyalty", "points awarded"),
                                       ("notifications", "e-mail sent")]
    assert shown(var, correlation_id="nobody") == []
    # an id that is only a prefix of the searched one is not a match
    assert shown(var, correlation_id=CID[:10]) == []


def test_lines_slightly_out_of_order_in_one_file_come_out_sorted(tmp_path: Path) -> None:
    # threads stamp a record before they take the handler's lock: a few may swap places
    d = tmp_path / "var" / "logs"
    write(d / "orders.1.jsonl", *(line("orders", s, f"m{s}") for s in (0.2, 0.1, 0.4, 0.3)))
    write(d / "catalog.1.jsonl", line("catalog", 0.25, "c"))
    assert [m for _, m in shown(tmp_path / "var")] == ["m0.1", "m0.2", "c", "m0.3", "m0.4"]


def test_follow_prints_new_lines_across_a_rotation(var: Path) -> None:
    directories = logs.log_dirs([var])
    filt = logs.Filter(correlation_id=CID)
    offsets: dict[tuple[int, int], int] = {}
    out = io.StringIO()
    view = logs.View(out=out, raw=True)
    view.show(logs.merged(directories, filt, offsets))
    assert view.shown == 9
    live = var / "logs" / "orders.1.jsonl"
    with live.open("a") as f:  # completes the partial line, then one more
        f.write('1Z", "service": "orders", "message": "partial done", '
                f'"correlation_id": "{CID}"}}\n')
        f.write(line("orders", 2.0, "before rotation"))
    live.rename(live.with_name("orders.1.jsonl.1.tmp"))  # the handler's rollover, in short
    for n in (2, 1):
        old = var / "logs" / f"orders.1.jsonl.{n}"
        old.rename(old.with_name(f"orders.1.jsonl.{n + 1}"))
    live.with_name("orders.1.jsonl.1.tmp").rename(live.with_name("orders.1.jsonl.1"))
    write(live, line("orders", 2.5, "after rotation"))
    with (var / "logs" / "loyalty.1.jsonl").open("a") as f:
        f.write(line("loyalty", 2.2, "late award"))
    logs.follow(directories, filt, view, offsets, interval=0, polls=1)
    new = [json.loads(raw)["message"] for raw in out.getvalue().splitlines()[9:]]
    assert new == ["partial done", "before rotation", "late award", "after rotation"]
    logs.follow(directories, filt, view, offsets, interval=0, polls=1)
    assert view.shown == 13  # nothing twice


# -- the command -----------------------------------------------------------------------------

def test_cli_table_and_json(var: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["logs", "--var-dir", str(var), "--correlation-id", CID,
                     "--service", "loyalty", "--service", "orders"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["TIME", "SERVICE", "LEVEL", "CORR", "ID", "MESSAGE"]
    assert rows[1].split(None, 4) == ["2026-12-06T07:00:00.000Z", "orders", "INFO",
                                      CID[:8], "POST /v2/orders 202"]
    assert [r.split()[1] for r in rows[1:]] == ["orders", "orders", "orders", "loyalty"]
    assert cli.main(["logs", "--var-dir", str(var), "--json", "--level", "ERROR"]) == 0
    docs = [json.loads(r) for r in capsys.readouterr().out.splitlines()]
    assert [(d["service"], d["message"]) for d in docs] == [("notifications", "e-mail sent")]


def test_cli_merges_several_var_dirs(var: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "loyalty-runner"
    write(other / "logs" / "loyalty.1.jsonl", line("loyalty", 0.35, "from the other runner"))
    assert cli.main(["logs", "--var-dir", str(var), "--var-dir", str(other), "--json",
                     "--correlation-id", CID, "--service", "loyalty"]) == 0
    messages = [json.loads(r)["message"] for r in capsys.readouterr().out.splitlines()]
    assert messages == ["from the other runner", "points awarded"]


def test_cli_without_log_files_or_with_a_bad_since(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["logs", "--var-dir", str(tmp_path)]) == 1
    assert "no log files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["logs", "--var-dir", str(tmp_path), "--since", "yesterday"])
    assert exc.value.code == 2


# -- the files behind it ---------------------------------------------------------------------

class CountingFormatter(JSONFormatter):
    calls = 0

    def format(self, record: logging.LogRecord) -> str:
        CountingFormatter.calls += 1
        return super().format(record)


def test_a_process_writes_the_same_lines_to_stderr_and_its_rotated_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "logs" / "catalog.2.jsonl"
    monkeypatch.setenv(logfile.LOG_FILE_ENV, str(target))
    monkeypatch.setenv(logfile.MAX_BYTES_ENV, "2000")
    monkeypatch.setenv(logfile.BACKUPS_ENV, "2")
    console_out = io.StringIO()
    console = logging.StreamHandler(console_out)
    console.setFormatter(CountingFormatter("catalog"))
    logger = logging.getLogger("test-logfile")
    logger.propagate = False
    logger.handlers[:] = [console]
    logger.setLevel(logging.INFO)
    try:
        assert logfile.attach(console, logger) == target
        CountingFormatter.calls = 0
        logger.info("first %s", 1, extra={"order_id": "o-9"})
        assert CountingFormatter.calls == 1  # formatted once for both handlers
        assert target.read_text() == console_out.getvalue()
        doc = json.loads(target.read_text())
        assert doc["message"] == "first 1" and doc["order_id"] == "o-9"
        assert not any(k.startswith("_") for k in doc)
        for n in range(40):
            logger.info("line %d %s", n, "x" * 100)
    finally:
        for handler in logger.handlers:
            handler.close()
        logger.handlers.clear()
    names = sorted(p.name for p in target.parent.iterdir())
    assert names == ["catalog.2.jsonl", "catalog.2.jsonl.1", "catalog.2.jsonl.2"]
    assert all(p.stat().st_size <= 2000 for p in target.parent.iterdir())
    merged = list(logs.merged([target.parent], logs.Filter()))
    assert [e.doc["message"] for e in merged][-1] == "line 39 " + "x" * 100


def test_without_the_setting_nothing_but_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(logfile.LOG_FILE_ENV, raising=False)
    console = logging.StreamHandler(io.StringIO())
    console.setFormatter(JSONFormatter("x"))
    logger = logging.getLogger("test-logfile-none")
    logger.handlers[:] = [console]
    assert logfile.attach(console, logger) is None
    assert logger.handlers == [console]


def test_charter_up_gives_each_worker_its_own_log_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(runner, "command", lambda comp, count, *_: ["serve", comp.name])
    monkeypatch.setattr(runner, "child_env", lambda comp, count, *_: {"A": "1"})
    started: list[dict[str, str]] = []

    def popen(argv: list[str], env: dict[str, str]) -> Any:
        started.append(env)
        return object()

    monkeypatch.setattr(subprocess, "Popen", popen)
    comp = Component("orders", "services.orders")
    spawns = runner._spawners(comp, 3)
    for spawn in (*spawns, spawns[1]):  # worker 2 restarted: the same file again
        spawn()
    files = [env[logfile.LOG_FILE_ENV] for env in started]
    base = tmp_path / "var" / "logs"
    assert files == [str(base / f"orders.{n}.jsonl") for n in (1, 2, 3, 2)]
    assert all(env["A"] == "1" for env in started)
    # charter up --replicas orders=2: instance 2's workers continue the numbering
    second = Instance("orders", 2, 9000, "https://127.0.0.1:9000")
    for spawn in runner._spawners(comp, 3, second, 2):
        spawn()
    assert [env[logfile.LOG_FILE_ENV] for env in started[4:]] == [
        str(base / f"orders.{n}.jsonl") for n in (4, 5, 6)]


@pytest.mark.parametrize("name, value", [(logfile.MAX_BYTES_ENV, "12"),
                                         (logfile.MAX_BYTES_ENV, "lots"),
                                         (logfile.BACKUPS_ENV, "-1")])
def test_bad_rotation_settings_are_refused_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=name):
        config.settings()


def test_a_restarted_worker_appends_and_counts_what_its_predecessor_wrote(
        tmp_path: Path) -> None:
    target = write(tmp_path / "orders.1.jsonl", line("orders", 0.0, "x" * 1700))
    handler = logfile.file_handler(target, logfile.OnceFormatter(JSONFormatter("orders")),
                                   max_bytes=2048, backups=1)
    logger = logging.getLogger("test-logfile-restart")
    logger.propagate = False
    logger.handlers[:] = [handler]
    try:
        logger.warning("short")  # fits: appended to the predecessor's lines
        assert [json.loads(r)["message"] for r in target.read_text().splitlines()] == [
            "x" * 1700, "short"]
        logger.warning("y" * 300)  # would pass 2048 bytes: rotated first
    finally:
        handler.close()
        logger.handlers.clear()
    assert json.loads(target.read_text())["message"] == "y" * 300
    rotated = target.with_name("orders.1.jsonl.1").read_text().splitlines()
    assert [json.loads(r)["message"] for r in rotated] == ["x" * 1700, "short"]

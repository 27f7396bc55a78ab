"""``charter dlq list|show|replay|purge`` against real RabbitMQ and the embedded broker."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from charter.messaging.broker import Subscription
from charter.messaging.consumer import Consumer
from charter.messaging.envelope import Envelope
from charterctl import dlq as dlq_cli
from tests.support.brokers import (
    AMQP_TEST_URL,
    BACKENDS,
    TrackingBroker,
    temporary_broker,
    unique,
)
from tests.support.servers import free_port


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def broker(backend: str, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[TrackingBroker]:
    """A broker the CLI finds through the environment, as ``charter`` would."""
    with temporary_broker(backend, tmp_path) as made:
        if backend == "rabbitmq":
            monkeypatch.setenv("AMQP_URL", AMQP_TEST_URL)
        else:
            monkeypatch.delenv("AMQP_URL", raising=False)
            monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path))
        yield made


Dead = tuple[Subscription, list[Envelope]]


def run(argv: list[str], known: Callable[[], Iterable[str]] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="charter")
    dlq_cli.register(parser.add_subparsers(dest="cmd", required=True), known_queues=known)
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def dead(broker: TrackingBroker) -> Dead:
    """A queue with two dead letters (the handler failed their only attempt)."""
    sub = Subscription(unique("cli"), ("orders.#",), max_attempts=1, backoff=())
    broker.declare(sub)
    sent = [Envelope.new(t, {"n": 1}, source="orders") for t in ("First", "Second")]
    for envelope in sent:
        broker.publish(envelope)

    def fail(envelope: Envelope) -> None:
        raise RuntimeError(f"cannot handle {envelope.type}")

    Consumer(broker, sub, fail, service="test").drain(10, idle=0.5)
    assert broker.queue_depth(sub.dlq) == 2
    return sub, sent


def test_list_a_queue_and_every_dlq(backend: str, dead: Dead,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    sub, _ = dead
    assert run(["dlq", "list", sub.queue]) == 0
    assert capsys.readouterr().out.split() == [sub.dlq, "2"]
    if backend == "embedded":
        assert run(["dlq", "list"]) == 0  # the embedded broker lists its queues itself
    else:
        assert run(["dlq", "list"], known=lambda: [sub.queue]) == 0
    assert f"{sub.dlq}  2" in capsys.readouterr().out


def test_show_leaves_the_messages(broker: TrackingBroker, dead: Dead,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    sub, sent = dead
    assert run(["dlq", "show", sub.queue, "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert sent[0].id in out and sent[1].id not in out
    assert "attempts=1" in out and "RuntimeError: cannot handle First" in out
    assert "key=orders.First" in out
    assert broker.queue_depth(sub.dlq) == 2
    assert run(["dlq", "show", sub.dlq]) == 0
    out = capsys.readouterr().out
    assert sent[0].id in out and sent[1].id in out


def test_replay_one_then_all_then_they_are_processed(
        broker: TrackingBroker, dead: Dead, capsys: pytest.CaptureFixture[str]) -> None:
    sub, sent = dead
    assert run(["dlq", "replay", sub.queue, "--id", sent[1].id]) == 0
    assert "replayed 1 message(s)" in capsys.readouterr().out
    assert broker.queue_depth(sub.dlq) == 1
    assert run(["dlq", "replay", sub.queue, "--id", "no-such-id"]) == 1
    assert "no message 'no-such-id'" in capsys.readouterr().err
    assert run(["dlq", "replay", sub.queue]) == 0
    assert broker.queue_depth(sub.dlq) == 0
    assert broker.queue_depth(sub.queue) == 2

    handled: list[str] = []
    Consumer(broker, sub, lambda e: handled.append(e.id), service="test").drain(10, idle=0.5)
    assert sorted(handled) == sorted(e.id for e in sent)


def test_purge_needs_yes(broker: TrackingBroker, dead: Dead,
                         capsys: pytest.CaptureFixture[str]) -> None:
    sub, _ = dead
    assert run(["dlq", "purge", sub.queue]) == 2
    assert "--yes" in capsys.readouterr().err
    assert broker.queue_depth(sub.dlq) == 2
    assert run(["dlq", "purge", sub.queue, "--yes"]) == 0
    assert "purged 2 message(s)" in capsys.readouterr().out
    assert broker.queue_depth(sub.dlq) == 0


@pytest.mark.parametrize("command", [["list"], ["show"], ["replay"], ["purge", "--yes"]])
def test_an_unknown_queue_exits_2(broker: TrackingBroker, command: list[str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    missing = unique("missing")
    argv = ["dlq", command[0], missing, *command[1:]]
    assert run(argv) == 2
    assert f"unknown queue '{missing}.dlq'" in capsys.readouterr().err


def test_an_unreachable_broker_exits_1(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}//")
    assert run(["dlq", "list", "orders"]) == 1
    assert "unavailable" in capsys.readouterr().err


def test_listing_rabbitmq_without_management_or_names_exits_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.brokers import require_rabbitmq

    require_rabbitmq()
    monkeypatch.setenv("AMQP_URL", AMQP_TEST_URL)
    monkeypatch.setenv("RABBITMQ_MANAGEMENT_URL", f"http://127.0.0.1:{free_port()}")
    assert run(["dlq", "list"]) == 2
    assert "charter dlq list QUEUE" in capsys.readouterr().err

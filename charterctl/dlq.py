"""``charter dlq``: list, show, replay and purge dead-lettered messages.

The broker is ``AMQP_URL`` when set, else the embedded broker under the var dir (the
same choice as the services, :meth:`charter.messaging.broker.Broker.from_config`).

Exit codes: 0 done; 1 the broker is unavailable, or ``replay --id`` found no such
message; 2 a usage error or an unknown queue.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable

from charter.messaging import dlq
from charter.messaging.broker import Broker, BrokerUnavailable, UnknownQueue

KnownQueues = Callable[[], Iterable[str]]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(subparsers: argparse._SubParsersAction, *,
             known_queues: KnownQueues | None = None) -> None:
    """Add ``dlq list|show|replay|purge``; ``known_queues`` names the platform's consumer
    queues for ``list`` when the broker cannot list them (RabbitMQ without management)."""
    group = subparsers.add_parser("dlq", help="dead-letter queues: list, show, replay, purge")
    sub = group.add_subparsers(dest="dlq_cmd", required=True)

    p = sub.add_parser("list", help="each dead-letter queue with its depth")
    p.add_argument("queue", nargs="?", help="only this consumer queue's DLQ")
    p.set_defaults(func=lambda args: cmd_list(args, known_queues))

    p = sub.add_parser("show", help="the dead letters of a queue (left in place)")
    p.add_argument("queue", help="the consumer queue (or its .dlq)")
    p.add_argument("--limit", type=_positive, default=10, help="at most N messages (10)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("replay", help="send dead letters back to their queue, attempts reset")
    p.add_argument("queue", help="the consumer queue (or its .dlq)")
    p.add_argument("--id", dest="message_id", help="only the message with this id")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("purge", help="delete every dead letter of a queue")
    p.add_argument("queue", help="the consumer queue (or its .dlq)")
    p.add_argument("--yes", action="store_true", help="confirm: the messages are lost")
    p.set_defaults(func=cmd_purge)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _run(action: Callable[[Broker], int]) -> int:
    broker = Broker.from_config()
    try:
        return action(broker)
    except UnknownQueue as exc:
        _err(f"unknown queue {exc.args[0]!r} on {broker.safe_url}")
        return EXIT_USAGE
    except dlq.CannotListQueues as exc:
        _err(str(exc))
        return EXIT_USAGE
    except BrokerUnavailable as exc:
        _err(str(exc))
        return EXIT_FAILED
    finally:
        broker.close()


def _err(text: str) -> None:
    print(f"charter dlq: {text}", file=sys.stderr)


def cmd_list(args: argparse.Namespace, known_queues: KnownQueues | None = None) -> int:
    """``charter dlq list [QUEUE]``."""
    def action(broker: Broker) -> int:
        known = list(known_queues()) if known_queues is not None else []
        rows = dlq.depths(broker, args.queue, known)
        if not rows:
            print("no dead-letter queues")
        width = max((len(name) for name, _ in rows), default=0)
        for name, depth in rows:
            print(f"{name:<{width}}  {depth}")
        return EXIT_OK
    return _run(action)


def cmd_show(args: argparse.Namespace) -> int:
    """``charter dlq show QUEUE [--limit N]``."""
    def action(broker: Broker) -> int:
        letters = dlq.peek(broker, args.queue, args.limit)
        if not letters:
            print(f"{dlq.main_queue(args.queue)}.dlq is empty")
        for letter in letters:
            print(f"{letter.id}  {letter.type}  attempts={letter.attempts}  "
                  f"reason={letter.reason}  key={letter.routing_key}  "
                  f"at={letter.dead_lettered_at}\n    last error: {letter.last_error}")
        return EXIT_OK
    return _run(action)


def cmd_replay(args: argparse.Namespace) -> int:
    """``charter dlq replay QUEUE [--id ID]``."""
    def action(broker: Broker) -> int:
        moved = dlq.replay(broker, args.queue, args.message_id)
        main = dlq.main_queue(args.queue)
        if args.message_id is not None and moved == 0:
            _err(f"no message {args.message_id!r} in {main}.dlq")
            return EXIT_FAILED
        print(f"replayed {moved} message(s) from {main}.dlq to {main}")
        return EXIT_OK
    return _run(action)


def cmd_purge(args: argparse.Namespace) -> int:
    """``charter dlq purge QUEUE --yes``."""
    if not args.yes:
        _err("purge deletes the messages for good: add --yes")
        return EXIT_USAGE

    def action(broker: Broker) -> int:
        count = dlq.purge(broker, args.queue)
        print(f"purged {count} message(s) from {dlq.main_queue(args.queue)}.dlq")
        return EXIT_OK
    return _run(action)

"""The server-less broker: a kombu virtual transport on one SQLite file.

URL: ``embedded+sqlite:///<path>`` (``<var_dir>/broker.db`` by default), shared by every
process on the machine. Registered as the kombu transport alias ``embedded``.

Hand-written because no kombu transport does what the platform needs without a server.
kombu's own SQLAlchemy transport (``sqla+sqlite://``) marks a row invisible when it
delivers it and never brings it back, so a consumer killed before its ack loses the
message; it keeps exchanges and bindings in the memory of one process; and it has none of
RabbitMQ's queue arguments. This transport, built on kombu's ``virtual`` channel:

* keeps a delivered row with its delivery time and tag; ``ack`` deletes it; a row
  delivered and not acked within ``visibility_timeout`` (transport option, default 30 s)
  is delivered again (a crash gives a duplicate, never a loss);
* stores exchanges, bindings and queue arguments in the database, so a publisher routes
  to queues another process declared (topic and direct exchanges, RabbitMQ's ``*``/``#``);
* honours ``x-message-ttl`` with ``x-dead-letter-routing-key`` (and
  ``x-dead-letter-exchange``) on a queue: a message put there is stored in the
  dead-letter target, held until the TTL has passed. That is what RabbitMQ does with the
  retry delay queues, so retries and the DLQ behave the same on both brokers.

SQLite runs in WAL mode with ``synchronous=FULL`` (transport option ``synchronous``) and a
busy timeout; a delivery is claimed inside ``BEGIN IMMEDIATE`` so two processes never
take the same row. One SQLite connection per channel; a channel is used by one thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport.virtual.base import queue_declare_ok_t

ALIAS = "embedded"
DEFAULT_VISIBILITY_TIMEOUT = 30.0
DEFAULT_POLLING_INTERVAL = 0.1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charter_exchange (
    name TEXT PRIMARY KEY, type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS charter_queue (
    name TEXT PRIMARY KEY, arguments TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS charter_binding (
    exchange TEXT NOT NULL, routing_key TEXT NOT NULL, queue TEXT NOT NULL,
    PRIMARY KEY (exchange, routing_key, queue));
CREATE TABLE IF NOT EXISTS charter_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    not_before REAL NOT NULL,
    delivered_at REAL,
    delivery_tag TEXT);
CREATE INDEX IF NOT EXISTS ix_charter_message_queue ON charter_message (queue, id);
CREATE UNIQUE INDEX IF NOT EXISTS ix_charter_message_tag ON charter_message (delivery_tag);
"""

_SYNCHRONOUS = {"OFF", "NORMAL", "FULL", "EXTRA"}
_schema_lock = threading.Lock()
_schema_done: set[str] = set()


def url_for(path: Path | str) -> str:
    """The broker URL of the SQLite file ``path``."""
    return f"{ALIAS}+sqlite:///{Path(path).resolve()}"


def path_of(hostname: str) -> Path:
    """The SQLite file of a connection's hostname (``sqlite:///<path>`` or a bare path)."""
    raw = hostname.split("+", 1)[1] if hostname.startswith(f"{ALIAS}+") else hostname
    if raw.startswith("sqlite:///"):
        raw = raw[len("sqlite:///"):]
    raw = raw.split("?", 1)[0]
    if not raw:
        raise ValueError("embedded broker URL without a file path")
    return Path(raw)


def topic_matches(pattern: str, key: str) -> bool:
    """RabbitMQ's topic match: ``*`` is one word, ``#`` is zero or more words.

    Written out because kombu's virtual topic exchange turns ``#`` into ``.*?``, so
    ``orders.#`` does not match ``orders`` as it does on RabbitMQ.
    """
    return _match(pattern.split("."), key.split("."))


def _match(pat: list[str], words: list[str]) -> bool:
    if not pat:
        return not words
    head, rest = pat[0], pat[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])


def connect(path: Path, synchronous: str = "FULL", busy_timeout: float = 30.0
            ) -> sqlite3.Connection:
    """An autocommit SQLite connection to the broker file, schema created once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)  # events are the platform's business: owner only
    sync = synchronous.upper()
    if sync not in _SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {sorted(_SYNCHRONOUS)}")
    db = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None,
                         check_same_thread=False)
    db.execute(f"PRAGMA synchronous={sync}")
    key = str(path.resolve())
    with _schema_lock:
        if key not in _schema_done:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            _schema_done.add(key)
    return db


class Channel(virtual.Channel):
    """A virtual channel whose queues, bindings and messages live in SQLite."""

    from_transport_options = (*virtual.Channel.from_transport_options,  # type: ignore[assignment]
                              "visibility_timeout", "synchronous")
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    synchronous: str = "FULL"

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.visibility_timeout = float(self.visibility_timeout)
        self._no_ack_queues: set[str] = set()
        self._db_lock = threading.RLock()
        self._db: sqlite3.Connection | None = None

    # -- the database ------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = connect(path_of(self.connection.client.hostname), self.synchronous)
        return self._db

    def _rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self._db_lock:
            return self.db.execute(sql, params).fetchall()

    def _write(self, sql: str, *params: Any) -> int:
        with self._db_lock:
            return self.db.execute(sql, params).rowcount

    def _ready_clause(self, now: float) -> tuple[str, tuple[float, float]]:
        return ("not_before <= ? AND (delivered_at IS NULL OR delivered_at <= ?)",
                (now, now - self.visibility_timeout))

    # -- exchanges, queues, bindings ------------------------------------------------------
    def exchange_declare(self, exchange: str | None = None, type: str = "direct",
                         durable: bool = False, auto_delete: bool = False,
                         arguments: Any = None, nowait: bool = False,
                         passive: bool = False) -> None:
        if passive:
            if exchange and not self._rows("SELECT 1 FROM charter_exchange WHERE name = ?",
                                           exchange):
                super().exchange_declare(exchange, type, passive=True)  # raises NOT_FOUND
            return
        super().exchange_declare(exchange, type, durable, auto_delete, arguments, nowait)
        if exchange:
            self._write("INSERT OR IGNORE INTO charter_exchange (name, type) VALUES (?, ?)",
                        exchange, type or "direct")

    def exchange_delete(self, exchange: str, if_unused: bool = False,
                        nowait: bool = False) -> None:
        self.state.exchanges.pop(exchange, None)
        with self._db_lock:
            self.db.execute("DELETE FROM charter_binding WHERE exchange = ?", (exchange,))
            self.db.execute("DELETE FROM charter_exchange WHERE name = ?", (exchange,))

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        arguments = json.dumps(kwargs.get("arguments") or {}, sort_keys=True)
        self._write("INSERT INTO charter_queue (name, arguments) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET arguments = excluded.arguments",
                    queue, arguments)

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return bool(self._rows("SELECT 1 FROM charter_queue WHERE name = ?", queue))

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False,
                     **kwargs: Any) -> int | None:
        if if_empty and self._size(queue):
            return None
        with self._db_lock:
            count = self._size(queue)
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for table, column in (("charter_message", "queue"),
                                      ("charter_binding", "queue"),
                                      ("charter_queue", "name")):
                    self.db.execute(f"DELETE FROM {table} WHERE {column} = ?", (queue,))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        self.state.queue_bindings_delete(queue)
        return count

    def queue_bind(self, queue: str, exchange: str | None = None, routing_key: str = "",
                   arguments: Any = None, **kwargs: Any) -> None:
        self._write("INSERT OR IGNORE INTO charter_binding (exchange, routing_key, queue) "
                    "VALUES (?, ?, ?)", exchange or "amq.direct", routing_key, queue)
        if exchange in self.state.exchanges:
            super().queue_bind(queue, exchange, routing_key, arguments, **kwargs)

    def queue_unbind(self, queue: str, exchange: str | None = None, routing_key: str = "",
                     arguments: Any = None, **kwargs: Any) -> None:
        self._write("DELETE FROM charter_binding WHERE exchange = ? AND routing_key = ? "
                    "AND queue = ?", exchange or "amq.direct", routing_key, queue)
        super().queue_unbind(queue, exchange, routing_key, arguments, **kwargs)

    def _lookup(self, exchange: str, routing_key: str, default: Any = None) -> list[str]:
        """The queues bound to ``exchange`` for ``routing_key`` (from the database)."""
        if not exchange:
            return [routing_key]
        kind = self._rows("SELECT type FROM charter_exchange WHERE name = ?", exchange)
        topic = bool(kind) and kind[0][0] == "topic"
        bindings = self._rows("SELECT routing_key, queue FROM charter_binding "
                              "WHERE exchange = ?", exchange)
        found: list[str] = []
        for pattern, queue in bindings:
            hit = topic_matches(pattern, routing_key) if topic else pattern == routing_key
            if hit and queue not in found:
                found.append(queue)
        return found

    # -- messages -------------------------------------------------------------------------
    def _queue_arguments(self, queue: str) -> dict[str, Any]:
        rows = self._rows("SELECT arguments FROM charter_queue WHERE name = ?", queue)
        return json.loads(rows[0][0]) if rows else {}

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """Store ``message``; a queue with a TTL and a dead-letter route holds it, due later,
        in the dead-letter target instead (RabbitMQ's delay-queue behaviour)."""
        now = time.time()
        not_before = now
        targets = [queue]
        args = self._queue_arguments(queue)
        if "x-message-ttl" in args and "x-dead-letter-routing-key" in args:
            not_before = now + float(args["x-message-ttl"]) / 1000.0
            dl_key = str(args["x-dead-letter-routing-key"])
            targets = self._lookup(str(args.get("x-dead-letter-exchange") or ""), dl_key)
            message["properties"].setdefault("delivery_info", {})["routing_key"] = dl_key
        payload = json.dumps(message)
        with self._db_lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for target in targets:
                    self.db.execute("INSERT INTO charter_message (queue, payload, not_before) "
                                    "VALUES (?, ?, ?)", (target, payload, not_before))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        """Claim the oldest ready row: mark it delivered (not deleted) with a fresh tag."""
        now = time.time()
        clause, params = self._ready_clause(now)
        select = (f"SELECT id, payload, delivered_at FROM charter_message WHERE queue = ? "
                  f"AND {clause} ORDER BY id LIMIT 1")
        with self._db_lock:
            if not self.db.execute(select, (queue, *params)).fetchone():
                raise Empty()  # cheap check without the write lock
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute(select, (queue, *params)).fetchone()
                if row is None:
                    self.db.execute("COMMIT")
                    raise Empty()
                row_id, payload, delivered_at = row
                tag = uuid.uuid4().hex
                if queue in self._no_ack_queues:
                    self.db.execute("DELETE FROM charter_message WHERE id = ?", (row_id,))
                else:
                    self.db.execute("UPDATE charter_message SET delivered_at = ?, "
                                    "delivery_tag = ? WHERE id = ?", (now, tag, row_id))
                self.db.execute("COMMIT")
            except Empty:
                raise
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        message: dict[str, Any] = json.loads(payload)
        props = message.setdefault("properties", {})
        props["delivery_tag"] = tag
        info = props.setdefault("delivery_info", {})
        info["redelivered"] = delivered_at is not None
        message["redelivered"] = delivered_at is not None
        return message

    def _forget(self, delivery_tag: str) -> None:
        self._write("DELETE FROM charter_message WHERE delivery_tag = ?", delivery_tag)

    def _restore(self, message: Any) -> None:
        """Make an unacked delivery ready again (on reject with requeue, or close)."""
        self._write("UPDATE charter_message SET delivered_at = NULL, delivery_tag = NULL "
                    "WHERE delivery_tag = ?", message.delivery_tag)

    def _restore_at_beginning(self, message: Any) -> None:
        self._restore(message)

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str,
                      **kwargs: Any) -> None:
        if no_ack:
            self._no_ack_queues.add(queue)
        super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack, **kwargs)
        if message is not None and no_ack:
            self._forget(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        self._forget(delivery_tag)
        super().basic_ack(delivery_tag, multiple)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if not requeue:
            self._forget(delivery_tag)
        super().basic_reject(delivery_tag, requeue)

    def _purge(self, queue: str) -> int:
        """Delete the ready messages (as RabbitMQ does: not the unacked, not the delayed)."""
        clause, params = self._ready_clause(time.time())
        return self._write(f"DELETE FROM charter_message WHERE queue = ? AND {clause}",
                           queue, *params)

    def _size(self, queue: str) -> int:
        clause, params = self._ready_clause(time.time())
        rows = self._rows(f"SELECT COUNT(*) FROM charter_message WHERE queue = ? AND {clause}",
                          queue, *params)
        return int(rows[0][0])

    def waiting(self, queue: str) -> int:
        """Messages of ``queue`` not yet handled: the ready ones and the ones held back
        for a retry (a delay queue's messages live here, due later), not those in flight."""
        clause = "delivered_at IS NULL OR delivered_at <= ?"
        rows = self._rows(f"SELECT COUNT(*) FROM charter_message WHERE queue = ? AND ({clause})",
                          queue, time.time() - self.visibility_timeout)
        return int(rows[0][0])

    def queue_declare(self, queue: str | None = None, passive: bool = False,
                      **kwargs: Any) -> Any:
        ok = super().queue_declare(queue, passive, **kwargs)
        return queue_declare_ok_t(ok.queue, ok.message_count, 0)

    def queue_names(self) -> list[str]:
        """Every declared queue (for ``charter dlq list``)."""
        return [row[0] for row in self._rows("SELECT name FROM charter_queue ORDER BY name")]

    def close(self) -> None:
        super().close()
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class Transport(virtual.Transport):
    """kombu transport ``embedded``: see the module docstring."""

    Channel = Channel
    can_parse_url = True
    default_port = 0  # type: ignore[assignment]
    driver_type = "sqlite"
    driver_name = "charter-embedded"
    polling_interval = DEFAULT_POLLING_INTERVAL
    connection_errors = (  # type: ignore[assignment]
        *virtual.Transport.connection_errors, sqlite3.OperationalError)
    channel_errors = (  # type: ignore[assignment]
        *virtual.Transport.channel_errors, sqlite3.DatabaseError)
    implements = virtual.Transport.implements.extend(
        exchange_type=frozenset(["direct", "topic"]))

    def driver_version(self) -> str:
        return sqlite3.sqlite_version

    def establish_connection(self) -> Any:
        client = self.client
        assert client is not None
        connect(path_of(client.hostname),
                str(client.transport_options.get("synchronous", "FULL"))).close()
        return super().establish_connection()


TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"

"""The leader's housekeeping: sent outbox rows and processed message ids older than the
retention go; unsent rows and recent ids stay (the tables do not grow without end)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, insert, select

from charter.clock import utcnow
from charter.config import ConfigError
from charter.db import Database, service_metadata
from charter.messaging import embedded, runtime
from charter.messaging.broker import Broker
from charter.messaging.envelope import Envelope
from charter.messaging.inbox import Inbox, add_inbox_table
from charter.messaging.leader import LeaderLock
from charter.messaging.outbox import Outbox, add_outbox_table
from tests.support.polling import wait_until


def test_old_sent_rows_and_old_ids_are_purged_the_rest_kept(tmp_path: Path) -> None:
    metadata = service_metadata()
    outbox = Outbox(add_outbox_table(metadata))
    inbox = Inbox(add_inbox_table(metadata))
    db = Database(f"sqlite:///{tmp_path / 'svc.db'}")
    metadata.create_all(db.engine)
    old, recent = utcnow() - timedelta(days=40), utcnow() - timedelta(days=1)
    with db.write() as s:
        for sent_at in (old, recent, None):
            event = Envelope.new("Thing", {}, source="svc")
            s.execute(insert(outbox.table).values(
                event_id=event.id, routing_key=event.routing_key, body=event.to_json(),
                created_at=old, sent_at=sent_at, attempts=0))
        s.execute(insert(inbox.table), [
            {"consumer": "svc.things", "message_id": "m-old", "processed_at": old},
            {"consumer": "svc.things", "message_id": "m-new", "processed_at": recent}])
    broker = Broker(embedded.url_for(tmp_path / "broker.db"))
    messaging = runtime.Messaging(
        "svc", db, outbox=outbox, inbox=inbox, broker=broker, keep=timedelta(days=30),
        lock=LeaderLock("svc-messaging", db.url, var_dir=tmp_path), lead_interval=0.1,
        registry=CollectorRegistry(), housekeeping_every=3600)

    def counts() -> tuple[int, int, int]:
        with db.session() as s:
            sent = s.execute(select(func.count()).select_from(outbox.table)
                             .where(outbox.table.c.sent_at.is_not(None))).scalar_one()
            unsent = s.execute(select(func.count()).select_from(outbox.table)
                               .where(outbox.table.c.sent_at.is_(None))).scalar_one()
            ids = s.execute(select(func.count()).select_from(inbox.table)).scalar_one()
        return int(sent), int(unsent), int(ids)

    assert counts() == (2, 1, 2)
    messaging.start()
    try:
        # the unsent row is published (and then sent: recent); the 40-day-old ones go
        wait_until(lambda: counts() == (2, 0, 1), timeout=10, what="housekeeping")
    finally:
        messaging.stop()
        broker.close()
    with db.session() as s:
        kept = s.execute(select(inbox.table.c.message_id)).scalars().all()
    assert kept == ["m-new"]


@pytest.mark.parametrize("value", ["0", "-3", "ten", "4000"])
def test_the_retention_setting_is_checked(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.RETENTION_ENV, value)
    with pytest.raises(ConfigError, match="MESSAGING_RETENTION_DAYS"):
        runtime.retention()
    monkeypatch.setenv(runtime.RETENTION_ENV, "7")
    assert runtime.retention() == timedelta(days=7)

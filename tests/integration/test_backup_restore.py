"""``charter backup`` / ``charter restore`` round trip on the real stores (SQLite files and
PostgreSQL databases): orders placed through orders v2 against the real catalog and
payments services → backup → more orders → a corrupted copy of the backup is refused with
nothing changed → restore → every table of the three databases equals the backup point,
and the orders projection rebuilt from the restored event store equals the restored one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, select

from charter.db import Database
from charter.testing import TokenFactory
from charterctl import cli, dbdump, restore
from services.catalog import app as catalog_app
from services.catalog import seed as catalog_seed
from services.catalog_client.client import HttpCatalogClient
from services.orders.app import create_app as create_orders
from services.orders.clients import HttpPayments
from services.orders.ports import CartSnapshot
from services.payments.app import create_app as create_payments
from services.payments.clients import SimulatedProvider
from tests.support.auth_headers import bearer
from tests.support.databases import fresh_postgres_database
from tests.support.servers import ThreadServer

SERVICES = ("catalog", "orders", "payments")
PROJECTION_TABLES = ("orders", "order_lines")
ITEMS = {"items": [{"product_id": 1, "quantity": 2}, {"product_id": 2, "quantity": 1}],
         "payment_method": {"type": "token", "token": "tok_visa"}}


class NoCart:
    """v2 checkouts here name their items: the cart is never read."""

    def get_cart(self, authorization: str, user_id: str) -> CartSnapshot:
        raise AssertionError("the cart is not used")

    def clear_cart(self, authorization: str, user_id: str) -> None:
        raise AssertionError("the cart is not used")

    def close(self) -> None:
        """Nothing to release."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """One database per service: SQLite files, or fresh PostgreSQL databases."""
    if request.param == "sqlite":
        yield {s: f"sqlite:///{tmp_path / (s + '.db')}" for s in SERVICES}
        return
    with ExitStack() as stack:
        yield {s: stack.enter_context(fresh_postgres_database(f"charter_bk_{s}"))
               for s in SERVICES}


class Platform:
    """Catalog and payments served by uvicorn in threads, orders in-process, each on its
    own real database; :meth:`stop` closes everything (a restore needs it stopped)."""

    def __init__(self, urls: dict[str, str], tokens: TokenFactory,
                 migrated_db: Callable[[str, str], Database],
                 asgi_server: Callable[..., ThreadServer]) -> None:
        self.dbs = {s: migrated_db(s, url) for s, url in urls.items()}
        catalog_seed.seed(self.dbs["catalog"])
        self.servers = [
            asgi_server(catalog_app.create_app(db=self.dbs["catalog"],
                                               verifier=tokens.verifier())),
            asgi_server(create_payments(db=self.dbs["payments"], verifier=tokens.verifier(),
                                        provider=SimulatedProvider(decline_above=10**9))),
        ]
        read = tokens.token(sub="orders", scope="catalog:read", role="service")
        reserve = tokens.token(sub="orders", scope="catalog:reserve", role="service")
        pay = tokens.token(sub="orders", scope="payments:read payments:write",
                           role="service", client_id="orders")
        payments = HttpPayments(self.servers[1].url, lambda: pay, timeout=5.0)
        self.orders = create_orders(
            db=self.dbs["orders"], verifier=tokens.verifier(),
            catalog=HttpCatalogClient(self.servers[0].url, lambda: read, lambda: reserve,
                                      timeout=5.0),
            cart=NoCart(), payments=payments, checkout_payments=payments)
        self.alice = bearer(tokens.token(sub="alice", scope="orders:read orders:write",
                                         role="customer", email="alice@example.com"))
        self.placed = 0

    def checkout(self) -> dict[str, Any]:
        """One v2 checkout: stock reserved and committed, payment authorised and captured."""
        self.placed += 1
        headers = {**self.alice, "Idempotency-Key": f"backup-test-{self.placed:04d}"}
        with self.orders.test_client() as client:
            r = client.post("/v2/orders", json=ITEMS, headers=headers)
        assert r.status_code == 202, r.text
        order: dict[str, Any] = r.json()
        assert order["status"] == "confirmed", order
        return order

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        for db in self.dbs.values():
            db.dispose()


def rows(url: str, only: tuple[str, ...] | None = None) -> dict[str, list[str]]:
    """Every row of every table (or of ``only``), order-independent."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {name: sorted(repr(tuple(r)) for r in conn.execute(select(table)))
                    for name, table in meta.tables.items() if only is None or name in only}
    finally:
        engine.dispose()


def state(urls: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    return {service: rows(url) for service, url in urls.items()}


def charter(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_backup_more_orders_restore_equals_the_backup_point(
        urls: dict[str, str], tmp_path: Path, tokens: TokenFactory,
        migrated_db: Callable[[str, str], Database],
        asgi_server: Callable[..., ThreadServer], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CHARTER_MTLS", "0")
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path / "var"))  # no supervisor.json
    for service, url in urls.items():
        monkeypatch.setenv(f"{service.upper()}_DATABASE_URL", url)
    platform = Platform(urls, tokens, migrated_db, asgi_server)
    platform.checkout()
    platform.checkout()
    at_backup = state(urls)

    code, out, err = charter("backup", "--to", str(tmp_path / "backups"),
                             *[f"--only={s}" for s in SERVICES], capsys=capsys)
    assert code == 0, err
    folder = Path(out.strip().splitlines()[-1])
    manifest = json.loads((folder / "manifest.json").read_text())
    entries = {e["service"]: e for e in manifest["services"]}
    assert sorted(entries) == sorted(SERVICES)
    kind = "sqlite" if urls["orders"].startswith("sqlite") else "postgresql"
    assert {e["kind"] for e in entries.values()} == {kind}
    events = at_backup["orders"]["events"]
    assert entries["orders"]["last_event_position"] == len(events) > 0
    assert entries["orders"]["schema_revision"]
    assert entries["catalog"]["last_event_position"] is None  # no event store there

    platform.checkout()  # after the backup point: more stock sold, a payment, events
    platform.stop()
    later = state(urls)
    assert later != at_backup
    assert len(later["orders"]["orders"]) == len(at_backup["orders"]["orders"]) + 1

    # A tampered backup is refused before anything is touched.
    bad = tmp_path / "tampered"
    shutil.copytree(folder, bad)
    with (bad / entries["payments"]["file"]).open("r+b") as handle:
        handle.seek(entries["payments"]["size"] // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    code, _out, err = charter("restore", str(bad), "--yes", capsys=capsys)
    assert code == restore.EXIT_REFUSED
    assert "payments: payments" in err and "SHA-256" in err
    assert "nothing was restored" in err
    assert state(urls) == later

    code, out, err = charter("restore", str(folder), "--yes", "--json", capsys=capsys)
    assert code == 0, err
    report = json.loads(out)
    assert sorted(s["service"] for s in report["services"]) == sorted(SERVICES)
    assert report["total_seconds"] >= max(s["seconds"] for s in report["services"])
    assert report["rto_target_s"] == restore.RTO_TARGET_S
    assert list(folder.glob("restore-*.json"))
    assert state(urls) == at_backup

    # The read model rebuilt from the restored event store is the restored read model.
    restored_projection = rows(urls["orders"], PROJECTION_TABLES)
    code, _out, err = charter("projections", "rebuild", "orders", capsys=capsys)
    assert code == 0, err
    assert rows(urls["orders"], PROJECTION_TABLES) == restored_projection
    assert len(restored_projection["orders"]) == 2


def test_restore_refuses_while_the_platform_runs(tmp_path: Path) -> None:
    status = tmp_path / "supervisor.json"
    assert restore.platform_running(status) is None  # no status file: never started
    ended = subprocess.Popen(["true"])
    ended.wait()
    status.write_text(json.dumps({"pid": ended.pid, "components": {"orders": {"pids": []}}}))
    assert restore.platform_running(status) is None  # charter up has stopped
    status.write_text(json.dumps({"pid": ended.pid,
                                  "components": {"orders": {"pids": [os.getppid()]}}}))
    assert "orders is running" in (restore.platform_running(status) or "")


def test_pg_dump_gets_the_password_in_its_environment_never_in_argv(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = postgres_url.replace("postgres@", "postgres:s3cret-pw@")  # trust auth ignores it
    seen: list[tuple[list[str], dict[str, str]]] = []
    real_run = subprocess.run

    def spy(argv: list[str], **kwargs: Any) -> Any:
        seen.append((argv, kwargs["env"]))
        return real_run(argv, **kwargs)

    monkeypatch.setattr(dbdump.subprocess, "run", spy)
    facts = dbdump.backup_postgres(url, "orders", tmp_path / "orders.dump")
    assert facts == dbdump.Facts(None, None)  # an empty database: no revision, no events
    dbdump.restore_postgres(tmp_path / "orders.dump", url)
    assert [Path(argv[0]).name for argv, _env in seen] == ["pg_dump", "pg_restore"]
    for argv, env in seen:
        assert not any("s3cret" in arg for arg in argv), argv
        assert env["PGPASSWORD"] == "s3cret-pw"

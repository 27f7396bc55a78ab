"""The ORM-free pieces every service layer shares (charter.usecases, .snapshots, .clock,
the idempotency port) and the promise that a service layer loads no SQLAlchemy."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from charter.clock import parse_rfc3339, rfc3339
from charter.idempotency import IN_PROGRESS, Outcome
from charter.problems import Conflict, NotFound, Unprocessable
from charter.security.principal import Principal
from charter.snapshots import JsonSnapshot
from charter.unit_of_work import WriteConflict
from charter.usecases import Page, Refusals, page_json, run_once_as, visible

SERVICES = ["cart", "catalog", "exchange", "loyalty", "notifications", "orders", "payments"]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_layer_loads_no_orm(service: str) -> None:
    code = f"import sys, services.{service}.services; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_pages() -> None:
    assert [Page.offset(1, 20), Page.offset(3, 20)] == [0, 40]
    page = Page(items=[1, 2], page=2, page_size=2, total=5)
    assert page_json(page, lambda n: {"n": n}) == {
        "items": [{"n": 1}, {"n": 2}], "page": 2, "page_size": 2, "total": 5}


class Refused(Exception):
    pass


def test_refusals_turn_domain_errors_into_problems_and_let_others_through() -> None:
    rules = Refusals(Refused, lambda exc: Conflict(str(exc), title="No"))
    with pytest.raises(Conflict) as caught, rules():
        raise Refused("not now")
    assert caught.value.detail == "not now" and isinstance(caught.value.__cause__, Refused)
    with pytest.raises(KeyError), rules():
        raise KeyError("a bug stays a bug")


@dataclass(frozen=True)
class Thing:
    id: str
    owner: str
    at: datetime


def test_someone_elses_resource_is_the_same_404_as_a_missing_one() -> None:
    alice = Principal(sub="alice", role="customer", scopes=frozenset())
    staff = Principal(sub="bob", role="staff", scopes=frozenset())
    mine = Thing("t1", "alice", datetime(2026, 1, 1, tzinfo=UTC))
    theirs = Thing("t2", "carol", datetime(2026, 1, 1, tzinfo=UTC))
    assert visible(alice, mine, lambda t: t.owner, "t1 does not exist") is mine
    assert visible(staff, theirs, lambda t: t.owner, "t2 does not exist") is theirs
    answers = []
    for value in (theirs, None):
        with pytest.raises(NotFound) as caught:
            visible(alice, value, lambda t: t.owner, "t2 does not exist")
        answers.append(caught.value.body())
    assert answers[0] == answers[1]


def test_snapshots_round_trip_domain_objects_as_json() -> None:
    snapshot = JsonSnapshot[Thing](Thing)
    thing = Thing("t1", "alice", datetime(2026, 1, 1, 12, tzinfo=UTC))
    data = snapshot.dump(thing)
    assert data == {"id": "t1", "owner": "alice", "at": "2026-01-01T12:00:00Z"}
    assert snapshot.load(data) == thing


def test_rfc3339_parsing_gives_aware_utc() -> None:
    plus_two = datetime(2026, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    assert parse_rfc3339("2026-01-01T14:00:00+02:00") == plus_two
    assert parse_rfc3339("2026-01-01T12:00:00Z").tzinfo is not None
    assert rfc3339(parse_rfc3339("2026-01-01T14:00:00+02:00")) == "2026-01-01T12:00:00Z"
    with pytest.raises(ValueError):
        parse_rfc3339("yesterday")


class MemoryKeys:
    """The IdempotencyKeys port in a dict (claims made by "another request" on demand)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[str, int, Any]] = {}
        self.race: tuple[int, Any] | None = None  # the answer a concurrent winner stores

    def lookup(self, scope: str, key: str, fp: str) -> Outcome | None:
        row = self.rows.get((scope, key))
        if row is None:
            return None
        if row[0] != fp:
            raise Unprocessable("reused")
        return Outcome(status=row[1], body=row[2], replayed=True)

    def claim(self, scope: str, key: str, fp: str) -> None:
        if self.race is not None:
            self.rows[(scope, key)] = (fp, *self.race)
            raise WriteConflict("claimed concurrently")
        self.rows[(scope, key)] = (fp, IN_PROGRESS, None)

    def complete(self, scope: str, key: str, status: int, body: Any) -> None:
        fp = self.rows[(scope, key)][0]
        self.rows[(scope, key)] = (fp, status, body)


class Repos:
    def __init__(self, keys: MemoryKeys) -> None:
        self.idempotency = keys


class MemoryUow:
    def __init__(self) -> None:
        self.keys = MemoryKeys()

    @contextmanager
    def read(self) -> Iterator[Repos]:
        yield Repos(self.keys)

    write = read


def test_run_once_as_stores_the_snapshot_and_replays_the_domain_object() -> None:
    uow = MemoryUow()
    snapshot = JsonSnapshot[Thing](Thing)
    made: list[Thing] = []

    def action(_repos: Repos) -> tuple[int, Thing]:
        made.append(Thing(f"t{len(made) + 1}", "alice", datetime(2026, 1, 1, tzinfo=UTC)))
        return 201, made[-1]

    first = run_once_as(uow, snapshot, scope="s", key="k", request={"a": 1}, action=action)
    again = run_once_as(uow, snapshot, scope="s", key="k", request={"a": 1}, action=action)
    assert (first.status, first.replayed, again.replayed) == (201, False, True)
    assert first.body == again.body == made[0] and len(made) == 1
    assert uow.keys.rows[("s", "k")][2] == snapshot.dump(made[0])  # JSON is what is kept


def test_run_once_as_replays_a_concurrent_winner() -> None:
    uow = MemoryUow()
    snapshot = JsonSnapshot[Thing](Thing)
    winner = Thing("w", "alice", datetime(2026, 1, 1, tzinfo=UTC))
    uow.keys.race = (201, snapshot.dump(winner))
    outcome = run_once_as(uow, snapshot, scope="s", key="k", request={},
                          action=lambda _r: pytest.fail("the loser must not act"))
    assert outcome.replayed and outcome.body == winner

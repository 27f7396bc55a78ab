"""Idempotency keys: over HTTP on reservations, and the generic charter.idempotency helper."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, func, select

from charter import idempotency
from charter.db import Database
from charter.idempotency import fingerprint
from charter.idempotency_store import Idempotency, idempotency_table
from charter.problems import Conflict, Unprocessable
from tests.support.plugin import assert_problem

Auth = Callable[..., dict[str, str]]


def stock_of(client: Any, auth: Auth, product_id: int) -> tuple[int, int]:
    s = client.get(f"/v1/products/{product_id}/stock", headers=auth()).json()
    return s["on_hand"], s["reserved"]


def post(client: Any, auth: Auth, path: str, key: str, body: Any = None) -> Any:
    kwargs: dict[str, Any] = {"headers": auth(**{"Idempotency-Key": key})}
    if body is not None:
        kwargs["json"] = body
    return client.post(path, **kwargs)


def test_same_key_replays_and_does_not_reserve_twice(client: Any, auth: Auth,
                                                     seeded: dict[str, Any]) -> None:
    spare = seeded["spare"]["id"]
    body = {"order_id": "order-1", "items": [{"product_id": spare, "quantity": 2}]}
    first = post(client, auth, "/v1/reservations", "key-order-1", body)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    for _ in range(3):
        again = post(client, auth, "/v1/reservations", "key-order-1", body)
        assert again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == "/v1/reservations/order-1"
    assert stock_of(client, auth, spare) == (5, 2)


def test_same_key_with_different_body_is_422(client: Any, auth: Auth,
                                             seeded: dict[str, Any]) -> None:
    spare = seeded["spare"]["id"]
    body = {"order_id": "order-1", "items": [{"product_id": spare, "quantity": 2}]}
    assert post(client, auth, "/v1/reservations", "key-order-1", body).status_code == 201
    changed = {"order_id": "order-1", "items": [{"product_id": spare, "quantity": 3}]}
    response = post(client, auth, "/v1/reservations", "key-order-1", changed)
    assert "key-order-1" in assert_problem(response, 422)["detail"]
    assert stock_of(client, auth, spare) == (5, 2)


def test_key_order_of_json_does_not_matter(client: Any, auth: Auth,
                                           seeded: dict[str, Any]) -> None:
    spare = seeded["spare"]["id"]
    one = {"order_id": "order-1", "items": [{"product_id": spare, "quantity": 1}]}
    two = {"items": [{"quantity": 1, "product_id": spare}], "order_id": "order-1"}
    assert post(client, auth, "/v1/reservations", "key-order-1", one).status_code == 201
    replay = post(client, auth, "/v1/reservations", "key-order-1", two)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"


def test_failed_request_is_not_remembered(client: Any, auth: Auth,
                                          seeded: dict[str, Any],
                                          service: Any) -> None:
    spare = seeded["spare"]["id"]
    body = {"order_id": "order-1", "items": [{"product_id": spare, "quantity": 8}]}
    assert post(client, auth, "/v1/reservations", "key-order-1", body).status_code == 409
    service.adjust_stock(spare, 5)
    retry = post(client, auth, "/v1/reservations", "key-order-1", body)
    assert retry.status_code == 201, retry.text
    assert stock_of(client, auth, spare) == (10, 8)


def test_commit_is_idempotent(client: Any, auth: Auth, seeded: dict[str, Any]) -> None:
    held = seeded["held_product"]["id"]
    first = post(client, auth, "/v1/reservations/order-held/commit", "commit-key-1")
    assert first.status_code == 200 and first.json()["status"] == "committed"
    replay = post(client, auth, "/v1/reservations/order-held/commit", "commit-key-1")
    assert replay.status_code == 200 and replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert stock_of(client, auth, held) == (8, 0)
    # The same key on another order is a different request.
    assert post(client, auth, "/v1/reservations/other/commit", "commit-key-1").status_code == 422


def test_release_is_idempotent(client: Any, auth: Auth, seeded: dict[str, Any]) -> None:
    held = seeded["held_product"]["id"]
    first = post(client, auth, "/v1/reservations/order-held/release", "release-key-1")
    assert first.status_code == 200 and first.json()["status"] == "released"
    replay = post(client, auth, "/v1/reservations/order-held/release", "release-key-1")
    assert replay.status_code == 200 and replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert stock_of(client, auth, held) == (10, 0)
    # A new key releases again without effect; a commit after release is refused.
    assert post(client, auth, "/v1/reservations/order-held/release",
                "release-key-2").status_code == 200
    assert stock_of(client, auth, held) == (10, 0)
    assert post(client, auth, "/v1/reservations/order-held/commit",
                "commit-key-9").status_code == 409


def test_replay_gives_the_first_answer_not_the_current_state(
        client: Any, auth: Auth, seeded: dict[str, Any]) -> None:
    """The stored answer is a snapshot: a replay after a commit still says ``held``."""
    spare = seeded["spare"]["id"]
    body = {"order_id": "order-snap", "items": [{"product_id": spare, "quantity": 1}]}
    first = post(client, auth, "/v1/reservations", "snap-key-1", body)
    assert first.status_code == 201 and first.json()["status"] == "held"
    assert post(client, auth, "/v1/reservations/order-snap/commit",
                "snap-key-2").json()["status"] == "committed"
    replay = post(client, auth, "/v1/reservations", "snap-key-1", body)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert client.get("/v1/reservations/order-snap", headers=auth()).json()["status"] == \
        "committed"


def test_keys_are_scoped_per_operation(client: Any, auth: Auth,
                                       seeded: dict[str, Any]) -> None:
    spare = seeded["spare"]["id"]
    body = {"order_id": "order-1", "items": [{"product_id": spare, "quantity": 1}]}
    assert post(client, auth, "/v1/reservations", "shared-key-1", body).status_code == 201
    commit = post(client, auth, "/v1/reservations/order-1/commit", "shared-key-1")
    assert commit.status_code == 200 and "idempotent-replayed" not in commit.headers


# The generic helper -----------------------------------------------------------------
@pytest.fixture
def helper_db(tmp_path: Path) -> Any:
    metadata = MetaData()
    table = idempotency_table(metadata)
    db = Database(f"sqlite:///{tmp_path / 'idem.db'}")
    metadata.create_all(db.engine)
    yield db, Idempotency(table), table
    db.dispose()


def test_fingerprint_is_canonical() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert fingerprint(None) != fingerprint({})
    assert len(fingerprint("x")) == 64


def test_run_stores_then_replays(helper_db: Any) -> None:
    db, idem, table = helper_db
    calls: list[int] = []

    def action(_session: Any) -> tuple[int, Any]:
        calls.append(1)
        return 201, {"n": len(calls)}

    first = idem.run(db.session, scope="s", key="k", request={"x": 1}, action=action)
    second = idem.run(db.session, scope="s", key="k", request={"x": 1}, action=action)
    assert (first.status, first.body, first.replayed) == (201, {"n": 1}, False)
    assert (second.status, second.body, second.replayed) == (201, {"n": 1}, True)
    assert calls == [1]
    other_scope = idem.run(db.session, scope="t", key="k", request={"x": 1}, action=action)
    assert other_scope.body == {"n": 2}
    with pytest.raises(Unprocessable):
        idem.run(db.session, scope="s", key="k", request={"x": 2}, action=action)


def test_action_failure_rolls_back_and_stores_nothing(helper_db: Any) -> None:
    db, idem, table = helper_db

    def boom(_session: Any) -> tuple[int, Any]:
        raise Conflict("no")

    with pytest.raises(Conflict):
        idem.run(db.session, scope="s", key="k", request={}, action=boom)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(table)) == 0


class RacingIdempotency(Idempotency):
    """Lets a concurrent request with the same key commit between lookup and claim."""

    def __init__(self, table: Any, db: Database, winner_request: Any) -> None:
        super().__init__(table)
        self.db = db
        self.winner_request = winner_request
        self.raced = False

    def claim(self, session: Any, scope: str, key: str, fp: str) -> None:
        if not self.raced:
            self.raced = True
            winner = threading.Thread(target=lambda: Idempotency(self.table).run(
                self.db.session, scope=scope, key=key, request=self.winner_request,
                action=lambda _s: (201, {"who": "winner"})))
            winner.start()
            winner.join()
        super().claim(session, scope, key, fp)


def test_concurrent_first_use_replays_the_winner(helper_db: Any) -> None:
    """The loser of the race hits the unique constraint, rolls back, replays the winner."""
    db, _, table = helper_db
    idem = RacingIdempotency(table, db, winner_request={"x": 1})
    acted: list[int] = []

    def loser(_session: Any) -> tuple[int, Any]:
        acted.append(1)
        return 201, {"who": "loser"}

    outcome = idem.run(db.session, scope="s", key="k", request={"x": 1}, action=loser)
    assert outcome.replayed and outcome.body == {"who": "winner"}
    assert acted == []
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(table)) == 1


def test_concurrent_first_use_with_other_body_is_422(helper_db: Any) -> None:
    db, _, table = helper_db
    idem = RacingIdempotency(table, db, winner_request={"x": "other"})
    with pytest.raises(Unprocessable):
        idem.run(db.session, scope="s", key="k", request={"x": 1},
                 action=lambda _s: (201, {"who": "loser"}))


def test_in_progress_key_is_409(helper_db: Any) -> None:
    db, idem, _ = helper_db
    with db.session() as s:
        idem.claim(s, "s", "k", fingerprint({"x": 1}))
    with pytest.raises(Conflict), db.session() as s:
        idem.lookup(s, "s", "k", fingerprint({"x": 1}))


def test_integrity_error_without_a_stored_key_is_409(helper_db: Any) -> None:
    db, idem, table = helper_db

    def clash(session: Any) -> tuple[int, Any]:
        idem.store(session, "other", "dup", "f" * 64, 200, None)
        idem.store(session, "other", "dup", "f" * 64, 200, None)  # unique violation
        return 200, {}

    with pytest.raises(Conflict):
        idem.run(db.session, scope="s", key="k", request={}, action=clash)
    assert table.name == idempotency.TABLE_NAME

"""The leader lock on both mechanisms: ``flock`` (SQLite mode) and the PostgreSQL advisory
lock, between objects, between processes (a holder killed with SIGKILL) and under
:func:`charter.messaging.leader.lead`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from charter.messaging.leader import LeaderLock, advisory_key, lead
from tests.support.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
NAME = "orders-messaging"


@pytest.fixture
def make_lock(any_database_url: str, tmp_path: Path) -> Iterator[Callable[..., LeaderLock]]:
    """``make_lock(name=NAME)``: a lock on this run's backend, released at teardown."""
    made: list[LeaderLock] = []

    def factory(name: str = NAME) -> LeaderLock:
        lock = LeaderLock(name, any_database_url, var_dir=tmp_path / "var")
        made.append(lock)
        return lock

    yield factory
    for lock in made:
        lock.release()


def test_mechanism_follows_the_database_url(tmp_path: Path) -> None:
    pg = LeaderLock(NAME, "postgresql://postgres@127.0.0.1/orders", var_dir=tmp_path)
    lite = LeaderLock(NAME, f"sqlite:///{tmp_path}/orders.db", var_dir=tmp_path)
    assert pg.mechanism == "postgres-advisory"
    assert lite.mechanism == "flock"
    assert lite.path == tmp_path / "locks" / f"{NAME}.lock"


def test_one_holder_at_a_time(make_lock: Callable[..., LeaderLock]) -> None:
    first, second, other = make_lock(), make_lock(), make_lock("cart-messaging")
    assert first.try_acquire() is True
    assert first.try_acquire() is True  # idempotent for the holder
    assert second.try_acquire() is False
    assert (first.holds(), second.holds()) == (True, False)
    assert other.try_acquire() is True  # another name is another lock

    first.release()
    assert first.holds() is False
    assert second.try_acquire() is True
    assert first.try_acquire() is False
    first.release()  # releasing a lock not held changes nothing
    assert second.holds() is True


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from charter.messaging.leader import LeaderLock

    url, var, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    lock = LeaderLock("orders-messaging", url, var_dir=var)
    assert lock.try_acquire()
    ready.write_text("acquired")
    time.sleep(60)
""")


def test_a_holder_killed_with_sigkill_gives_the_lock_up(
        any_database_url: str, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, any_database_url, str(tmp_path / "var"), str(ready)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lock = LeaderLock(NAME, any_database_url, var_dir=tmp_path / "var")
    try:
        wait_until(lambda: ready.exists() or child.poll() is not None, timeout=20,
                   what="the child to take the lock")
        assert child.poll() is None, "the holder exited"
        assert lock.try_acquire() is False

        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        wait_until(lock.try_acquire, timeout=10, interval=0.05,
                   what="the lock after the holder was killed")
        assert lock.holds()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        lock.release()


def test_postgres_lock_is_lost_with_its_connection(postgres_url: str, tmp_path: Path) -> None:
    holder = LeaderLock(NAME, postgres_url, var_dir=tmp_path)
    contender = LeaderLock(NAME, postgres_url, var_dir=tmp_path)
    admin = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1),
                          isolation_level="AUTOCOMMIT")
    try:
        assert holder.try_acquire()
        assert not contender.try_acquire()
        with admin.connect() as conn:  # an operator (or a failover) ends the session
            killed = conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = :app"), {"app": f"charter-leader:{NAME}"}).scalar()
        assert killed == 1
        assert holder.holds() is False
        assert contender.try_acquire() is True
    finally:
        holder.release()
        contender.release()
        admin.dispose()


def test_a_removed_lock_file_is_no_longer_held(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/orders.db"
    holder = LeaderLock(NAME, url, var_dir=tmp_path)
    contender = LeaderLock(NAME, url, var_dir=tmp_path)
    try:
        assert holder.try_acquire()
        assert holder.path.read_text().strip() == str(os.getpid())
        holder.path.unlink()  # a new file could now be locked by someone else
        assert contender.try_acquire() is True
        assert holder.holds() is False
    finally:
        holder.release()
        contender.release()


@pytest.mark.parametrize("name", ["", "../escape", "a/b", "white space", "x" * 101])
def test_lock_names_cannot_escape_the_lock_folder(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LeaderLock(name, "sqlite:///x.db", var_dir=tmp_path)


def test_advisory_key_is_a_stable_signed_64_bit_integer() -> None:
    key = advisory_key(NAME)
    assert key == advisory_key(NAME) != advisory_key("cart-messaging")
    assert -(2**63) <= key < 2**63


def test_lead_runs_the_work_in_one_process_and_hands_over(
        make_lock: Callable[..., LeaderLock]) -> None:
    active: list[str] = []
    ran: list[str] = []
    overlap: list[list[str]] = []
    guard = threading.Lock()

    def work_of(worker: str):  # type: ignore[no-untyped-def]
        def work(leading: threading.Event) -> None:
            with guard:
                active.append(worker)
                ran.append(worker)
                if len(active) > 1:
                    overlap.append(list(active))
            leading.wait()
            with guard:
                active.remove(worker)
        return work

    stops = {w: threading.Event() for w in ("w1", "w2")}
    threads = {w: threading.Thread(target=lead, args=(make_lock(), stops[w], work_of(w)),
                                   kwargs={"retry": 0.05, "check": 0.05})
               for w in stops}
    for thread in threads.values():
        thread.start()
    try:
        wait_until(lambda: active, what="a leader")
        first = active[0]
        second = "w2" if first == "w1" else "w1"
        stops[first].set()  # the leading worker shuts down: the other takes over
        threads[first].join(10)
        assert not threads[first].is_alive()
        wait_until(lambda: active == [second], what="the other worker to lead")
    finally:
        for w in stops:
            stops[w].set()
        for thread in threads.values():
            thread.join(10)
    assert ran == [first, second]
    assert overlap == []
    assert active == []


def test_lead_stops_the_work_when_the_lock_is_lost_and_leads_again(tmp_path: Path) -> None:
    lock = LeaderLock(NAME, f"sqlite:///{tmp_path}/orders.db", var_dir=tmp_path)
    terms: list[threading.Event] = []

    def work(leading: threading.Event) -> None:
        terms.append(leading)
        leading.wait()

    stop = threading.Event()
    thread = threading.Thread(target=lead, args=(lock, stop, work),
                              kwargs={"retry": 0.05, "check": 0.05})
    thread.start()
    try:
        wait_until(lambda: len(terms) == 1, what="the first term")
        lock.path.unlink()  # the lock is lost: the work must be told to stop
        wait_until(lambda: terms[0].is_set(), what="the work to be stopped")
        wait_until(lambda: len(terms) == 2, what="a new term on a new lock file")
        assert lock.holds()
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert all(term.is_set() for term in terms)
    assert not lock.holds()  # released on the way out

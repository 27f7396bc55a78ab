"""Run a callback once a session's transaction has committed (and never if it rolls back).

For side effects that must follow the data, not precede it: a metric counted inside the
transaction would count a write that a conflict or a failure then rolls back, and count it
again when the work is retried. ``on_commit(session, callback)`` keeps the callback on the
session (``session.info``) until SQLAlchemy's ``after_commit`` (outermost transaction only)
runs it, or ``after_rollback`` drops it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

KEY = "charter.on_commit"

_lock = threading.Lock()
_installed = False


def _after_commit(session: Session) -> None:
    for callback in session.info.pop(KEY, ()):
        try:
            callback()
        except Exception:  # noqa: BLE001 - a side effect must never fail a commit
            log.exception("after-commit callback failed")


def _after_rollback(session: Session) -> None:
    session.info.pop(KEY, None)


def on_commit(session: Session, callback: Callable[[], None]) -> None:
    """Call ``callback`` after ``session``'s current transaction commits."""
    global _installed
    if not _installed:
        with _lock:
            if not _installed:
                event.listen(Session, "after_commit", _after_commit)
                event.listen(Session, "after_rollback", _after_rollback)
                _installed = True
    session.info.setdefault(KEY, []).append(callback)

"""An in-memory unit of work for unit tests of a service layer (no database).

A service's fakes supply only their state and a repository over it; this class gives the
transaction semantics every fake needs the same way.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

S = TypeVar("S")
R = TypeVar("R")


class InMemoryUnitOfWork(Generic[S, R]):
    """A :class:`charter.unit_of_work.UnitOfWork` over ``repository(state)``.

    ``read()`` works on a copy of ``state``; ``write()`` works on a copy that replaces
    ``state`` only when the block ends without an exception (rolled back otherwise), one
    writer at a time (as the SQL adapters' write locks). ``commits`` and ``rollbacks``
    count how write units of work ended.
    """

    def __init__(self, state: S, repository: Callable[[S], R]) -> None:
        self.state = state
        self.repository = repository
        self.commits = 0
        self.rollbacks = 0
        self._writer = threading.Lock()

    @contextmanager
    def read(self) -> Iterator[R]:
        yield self.repository(copy.deepcopy(self.state))

    @contextmanager
    def write(self) -> Iterator[R]:
        with self._writer:
            working = copy.deepcopy(self.state)
            try:
                yield self.repository(working)
            except BaseException:
                self.rollbacks += 1
                raise
            self.state = working
            self.commits += 1

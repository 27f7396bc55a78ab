"""Alembic environment of the exchange service (online mode, its own version table).

The store is imported by name so that mypy, which sees ``services/exchange`` as the
package ``exchange`` while ``services/`` has no ``__init__.py``, does not check it twice.
"""

import importlib

from charter.migrations import run_env

run_env(importlib.import_module("services.exchange.store").metadata)

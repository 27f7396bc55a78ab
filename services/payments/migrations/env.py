"""Alembic environment of the payments service (online mode, its own version table).

The store is imported by name so that mypy, which sees ``services/payments`` as the
package ``payments`` while ``services/`` has no ``__init__.py``, does not check it twice.
"""

import importlib

from charter.migrations import run_env

run_env(importlib.import_module("services.payments.store").metadata)

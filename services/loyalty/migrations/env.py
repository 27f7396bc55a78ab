"""Alembic environment of the loyalty service (online mode, its own version table).

The store is imported by name so that mypy does not see the module under two names.
"""

import importlib

from charter.migrations import run_env

run_env(importlib.import_module("services.loyalty.store").metadata)

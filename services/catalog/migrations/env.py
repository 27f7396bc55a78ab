"""Alembic environment of the catalog service (online mode, its own version table).

The store is imported by name (not ``from services.catalog.store import metadata``) so
that mypy, which sees ``services/catalog`` as the package ``catalog`` while ``services/``
has no ``__init__.py``, does not find the module twice under two names.
"""

import importlib

from charter.migrations import run_env

run_env(importlib.import_module("services.catalog.store").metadata)

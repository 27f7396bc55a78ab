"""Data shared by the exchange tests (importable: tests/exchange is on sys.path)."""

from __future__ import annotations

import json
from typing import Any

from services.exchange.seed import RATES

SEED_RATES = {code: rate for code, rate in RATES.items() if code != "EUR"}

Reply = tuple[int, bytes]


def json_reply(doc: Any, status: int = 200) -> Reply:
    """A stub reply carrying ``doc`` as raw JSON bytes."""
    return status, json.dumps(doc).encode()

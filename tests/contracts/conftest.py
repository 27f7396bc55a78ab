"""Contract tests: no usage telemetry from the Pact libraries (they would try to send it)."""

from __future__ import annotations

import os

os.environ.setdefault("PACT_DO_NOT_TRACK", "true")

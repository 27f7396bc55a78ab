"""One running platform for the whole fuzz session, and the tokens to call it with."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from charter import specs
from tests.fuzz.support import (
    CASES,
    HARNESS,
    Credentials,
    Harness,
    Target,
    operation_index,
    spec_files,
)
from tests.support.platform import running

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """``charter up`` on SQLite files with the gateway's rate limit off (started once).

    ``CHARTER_FUZZ_TARGET=<env.json>`` points the run at a platform that is already up
    instead (the JSON object of the environment it was started with), to iterate on a fix.
    """
    existing = os.environ.get("CHARTER_FUZZ_TARGET")
    if existing:
        yield Target(json.loads(Path(existing).read_text()))
        return
    with running(tmp_path_factory.mktemp("fuzz"), "sqlite", prefix="charter_fuzz",
                 extra_env={"GATEWAY_RATE_LIMIT": "0"}) as platform:
        yield Target(platform.env)


@pytest.fixture(scope="session")
def fuzz_harness(fuzz_target: Target) -> Iterator[Harness]:
    """Where and as whom every operation of every spec is called (see tests/fuzz/support)."""
    operations = {f"{api}/{version}": operation_index(api, version, specs.load(api, version))
                  for api, version in spec_files()}
    callers = {c for ops in operations.values() for info in ops.values()
               for c in info.internal_callers}
    credentials = Credentials(fuzz_target, callers)
    credentials.refresh()
    HARNESS["current"] = Harness(fuzz_target, credentials, operations)
    yield HARNESS["current"]
    HARNESS.clear()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many test cases the fuzz tests ran, per spec and kind."""
    if CASES:
        terminalreporter.write_sep("-", f"fuzz: {sum(CASES.values())} test cases")
        for name, count in sorted(CASES.items()):
            terminalreporter.write_line(f"  {name:40} {count:6}")

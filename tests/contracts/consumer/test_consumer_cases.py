"""Each consumer case against the Pact mock server: the real adapter sends what the pact
declares (the mock server fails on any other request) and maps the answer as asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contracts.consumer.cases import CASES, Case
from tests.contracts.consumer.run import run_case


@pytest.fixture(autouse=True)
def _plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_MTLS", "0")  # the mock server speaks plain HTTP


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_consumer_case(case: Case, tmp_path: Path) -> None:
    run_case(case, tmp_path)
    assert (tmp_path / f"{case.consumer}-{case.provider}.json").is_file()

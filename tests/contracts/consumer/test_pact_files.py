"""The committed pacts (contracts/pacts/) are exactly what the consumer tests write.

Each pair's cases are run into a temporary directory and compared with the committed file,
volatile metadata (library versions) aside. ``CHARTER_UPDATE_PACTS=1`` rewrites the
committed files instead (then review the diff and commit it with the consumer's change).
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.contracts import pacts
from tests.contracts.consumer.cases import pairs
from tests.contracts.consumer.run import build_pact


@pytest.fixture(autouse=True)
def _plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_MTLS", "0")


def _text(document: dict[str, object]) -> list[str]:
    return json.dumps(pacts.normalised(document), indent=2, sort_keys=True).splitlines()


@pytest.mark.parametrize(("consumer", "provider"), pairs(), ids=[f"{c}-{p}" for c, p in pairs()])
def test_committed_pact_is_up_to_date(consumer: str, provider: str, tmp_path: Path) -> None:
    built = build_pact(consumer, provider, tmp_path)
    committed = pacts.pact_path(consumer, provider)
    if os.environ.get(pacts.UPDATE_ENV) == "1":
        committed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, committed)
    assert committed.is_file(), (
        f"{committed.relative_to(pacts.PACT_DIR.parent.parent)} is missing: "
        f"run `{pacts.REFRESH_COMMAND}` and commit it")
    new, old = _text(pacts.load(built)), _text(pacts.load(committed))
    if new != old:
        diff = "\n".join(list(difflib.unified_diff(old, new, "committed", "consumer tests",
                                                   lineterm=""))[:80])
        pytest.fail(f"{committed.name} differs from what the consumer tests write; if the "
                    f"change is intended, run `{pacts.REFRESH_COMMAND}` and commit the "
                    f"file.\n{diff}", pytrace=False)


def test_no_stale_pact_files() -> None:
    expected = {pacts.pact_path(c, p).name for c, p in pairs()}
    stale = {p.name for p in pacts.committed_pacts()} - expected
    assert not stale, f"pacts no consumer test writes any more (delete them): {sorted(stale)}"

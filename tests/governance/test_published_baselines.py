"""Every spec against its published baseline (``openapi/.published/<api>/v<N>.yaml``).

A breaking change within a major version fails here; ship it as ``v<N+1>.yaml`` instead
(see docs/governance.md, "Breaking changes and published baselines"). A spec without a
baseline fails too: publish it with ``charter gov publish <api>/v<N>``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from governance.diff import engine, publish

ROOT = Path(__file__).resolve().parents[2]
SPECS = publish.specs(ROOT / "openapi")


def test_there_are_specs_to_check() -> None:
    assert len(SPECS) >= 7


@pytest.mark.parametrize("ref", SPECS, ids=[ref.name for ref in SPECS])
def test_spec_does_not_break_its_published_baseline(ref: publish.SpecRef) -> None:
    if not ref.baseline.exists():
        pytest.fail(f"{ref.name} has no published baseline "
                    f"({ref.baseline.relative_to(ROOT)}): run `charter gov publish {ref.name}`")
    breaks = [f for f in publish.check(ref) if f.level is engine.Level.ERR]
    assert not breaks, (
        f"openapi/{ref.name}.yaml breaks its published baseline:\n"
        + engine.format_text(breaks)
        + "\nShip the change as a new major version, or (if no client can be affected) "
          f"`charter gov publish {ref.name} --allow-breaking 'REASON'`.")

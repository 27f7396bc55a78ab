"""Where things are: the repository root, Spectral, the ruleset and the default specs."""

from __future__ import annotations

from pathlib import Path

RULESET = Path("governance/spectral/charter.yaml")
RESOLVER = Path("governance/spectral/resolver.js")
EXCEPTIONS = Path("governance/lint-exceptions.yaml")
SPECTRAL = Path("node_modules/.bin/spectral")


class LintSetupError(RuntimeError):
    """The linter cannot run here (exit code 2)."""


def repo_root(start: Path | None = None) -> Path:
    """The checkout holding the ruleset: searched upwards from *start* (default: the
    current directory), then from this file, so the command works from any folder."""
    candidates = [(start or Path.cwd()).resolve(), Path(__file__).resolve()]
    for origin in candidates:
        for folder in (origin, *origin.parents):
            if (folder / RULESET).is_file():
                return folder
    raise LintSetupError(f"no Charter checkout (with {RULESET}) above {candidates[0]}")


def spectral_binary(root: Path) -> Path:
    """The pinned Spectral CLI installed by ``make node`` (``npm ci``)."""
    binary = root / SPECTRAL
    if not binary.exists():
        raise LintSetupError(f"{binary} is missing: run `make node` (npm ci) first")
    return binary


def default_specs(root: Path) -> list[Path]:
    """Every published API spec: ``openapi/<api>/v<major>.yaml``."""
    return sorted(path for path in (root / "openapi").glob("*/v*.yaml")
                  if path.stem[1:].isdigit())


def display(path: Path, root: Path) -> str:
    """*path* relative to the checkout when inside it, else absolute."""
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return path.resolve().as_posix()

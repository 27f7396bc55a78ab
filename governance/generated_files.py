"""Files a generator owns in one folder: what drifted on disk, and writing them.

Shared by the generators whose output is committed (``governance.catalog``: the Backstage
entities; ``governance.k8s``: the Kubernetes base), so ``--check`` and the write behave the
same everywhere: a generated file missing or different is stale, a ``*.yaml`` in the
folder that the generator no longer makes is stray (reported, and removed on write).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Generator:
    """A generator module's three functions and the errors its ``render`` raises."""

    render: Callable[[], dict[Path, str]]
    drift: Callable[[dict[Path, str]], list[str]]
    write: Callable[[dict[Path, str]], list[Path]]
    errors: tuple[type[Exception], ...] = ()


def drift(rendered: dict[Path, str], folder: Path, root: Path) -> list[str]:
    """Generated files missing or different on disk, then stray ``*.yaml`` in ``folder``
    (paths relative to ``root``)."""
    stale = [str(p.relative_to(root)) for p, text in rendered.items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    stray = [str(p.relative_to(root)) for p in sorted(folder.glob("*.yaml"))
             if p not in rendered]
    return stale + [f"{s} (not generated)" for s in stray]


def write(rendered: dict[Path, str], folder: Path) -> list[Path]:
    """Write every generated file and remove stray ``*.yaml`` in ``folder``; what changed."""
    changed = []
    for stray in sorted(folder.glob("*.yaml")):
        if stray not in rendered:
            stray.unlink()
            changed.append(stray)
    for path, text in rendered.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def run(command: str, what: str, where: str, generator: Generator, *, check: bool,
        root: Path) -> int:
    """A generator command: write the files (printing each one written) or, with
    ``check``, exit 1 naming the stale ones; 2 when the inputs cannot be rendered.

    ``command`` is the CLI name (``k8s``), ``what`` the output named in messages (``the
    Kubernetes base``), ``where`` the folder shown (``deploy/k8s/base/generated/``)."""
    refusals: tuple[type[Exception], ...] = (*generator.errors, ValueError)
    try:
        rendered = generator.render()
    except refusals as exc:
        print(f"charter gov {command}: {exc}", file=sys.stderr)
        return 2
    if check:
        stale = generator.drift(rendered)
        if stale:
            print(f"{what} is out of date ({', '.join(stale)}): run `charter gov {command}`",
                  file=sys.stderr)
            return 1
        print(f"{where}: up to date")
        return 0
    changed = generator.write(rendered)
    for path in changed:
        print(f"wrote {path.relative_to(root)}")
    if not changed:
        print(f"{where}: up to date")
    return 0

"""Run the Spectral CLI once over many specs and read its JSON results."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

from governance.lint.findings import SEVERITIES, Finding, spectral_pointer
from governance.lint.paths import RESOLVER, LintSetupError, display


class SpectralRun:
    """One ``spectral lint -f json`` process, started at once so two runs overlap."""

    def __init__(self, binary: Path, ruleset: Path, specs: Sequence[Path], root: Path) -> None:
        self.root = root
        command = [str(binary), "lint", "--format", "json", "--quiet",
                   "--ruleset", str(ruleset), "--resolver", str(root / RESOLVER),
                   *[str(spec) for spec in specs]]
        self._process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)

    def findings(self, timeout: float = 300) -> list[Finding]:
        """Wait for Spectral and return its findings; a crash is a :class:`LintSetupError`."""
        out, err = self._process.communicate(timeout=timeout)
        try:
            results = json.loads(out) if out.strip() else None
        except json.JSONDecodeError:
            results = None
        if not isinstance(results, list):
            detail = (err or out).strip()[-2000:]
            raise LintSetupError(f"spectral failed (exit {self._process.returncode}): {detail}")
        return [self._finding(result) for result in results]

    def stop(self) -> None:
        """End the process if it still runs (after an error elsewhere)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.communicate()

    def _finding(self, result: dict) -> Finding:
        source = result.get("source")
        file = display(Path(source), self.root) if source else "?"
        severity = result.get("severity", 0)
        name = SEVERITIES[severity] if isinstance(severity, int) and 0 <= severity < 4 \
            else str(severity)
        line = int(result.get("range", {}).get("start", {}).get("line", 0)) + 1
        return Finding(file, line, str(result.get("code", "?")), name,
                       str(result.get("message", "")).strip(),
                       spectral_pointer(list(result.get("path", []))))

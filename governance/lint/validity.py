"""OpenAPI validity of each spec with ``openapi-spec-validator`` (references resolved)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

from governance.lint.findings import VALIDITY_RULE, Finding, spectral_pointer
from governance.lint.paths import display


def _line_of(node: yaml.Node | None, path: Iterable[Any]) -> int:
    """1-based line of the deepest node of *path* found in the composed YAML *node*."""
    if node is None:
        return 1
    line = node.start_mark.line + 1
    for part in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if key.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and str(part).isdigit() \
                and int(part) < len(node.value):
            child = node.value[int(part)]
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line


def validate(spec: Path, root: Path) -> list[Finding]:
    """Findings of ``openapi-spec-validator`` for *spec* (empty when valid)."""
    where = display(spec, root)
    try:
        text = spec.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
        tree = yaml.compose(text)
    except (OSError, yaml.YAMLError) as exc:
        return [Finding(where, 1, VALIDITY_RULE, "error", f"cannot read the spec: {exc}")]
    if not isinstance(document, dict):
        return [Finding(where, 1, VALIDITY_RULE, "error", "a spec is a YAML mapping")]
    version = str(document.get("openapi", ""))
    validator_class = OpenAPIV31SpecValidator if version.startswith("3.1") \
        else OpenAPIV30SpecValidator
    findings = []
    try:
        for error in validator_class(document, base_uri=spec.resolve().as_uri()).iter_errors():
            path = list(getattr(error, "path", []) or [])
            message = str(getattr(error, "message", error)).splitlines()[0]
            findings.append(Finding(where, _line_of(tree, path), VALIDITY_RULE, "error",
                                    message, spectral_pointer(path)))
    except Exception as exc:  # noqa: BLE001 - a broken $ref aborts the validator itself
        detail = str(exc).splitlines()[0].split(" within {")[0][:300]  # not the whole doc
        findings.append(Finding(where, 1, VALIDITY_RULE, "error",
                                f"{type(exc).__name__}: {detail}"))
    return findings

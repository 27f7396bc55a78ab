"""One lint finding, whichever tool produced it, and JSON-pointer helpers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, unquote

#: Spectral's numeric severities (DiagnosticSeverity) by name
SEVERITIES = ("error", "warning", "info", "hint")
#: rule id of findings from openapi-spec-validator
VALIDITY_RULE = "charter-openapi-valid"
#: rule id of findings about governance/lint-exceptions.yaml itself
EXCEPTION_RULE = "charter-lint-exception"


@dataclass(frozen=True, order=True)
class Finding:
    """A rule broken at one place: ``file`` is repository-relative where possible."""

    file: str
    line: int
    rule: str
    severity: str
    message: str
    pointer: str = ""

    @property
    def is_error(self) -> bool:
        """True for findings that fail the lint (exit 1)."""
        return self.severity == "error"

    def as_dict(self) -> dict[str, Any]:
        """The finding as plain JSON data."""
        return asdict(self)


def decode_pointer(pointer: str) -> list[str]:
    """RFC 6901 pointer (``/a/b~1c``, an optional leading ``#``, percent-encoding as in a
    URI fragment or as the report prints it) to its segments."""
    pointer = pointer.removeprefix("#")
    if not pointer:
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"not a JSON pointer: {pointer!r}")
    return [unquote(part).replace("~1", "/").replace("~0", "~")
            for part in pointer[1:].split("/")]


def spectral_pointer(path: list[Any]) -> str:
    """A document path in Spectral's own pointer form (``@stoplight/json``'s
    ``pathToPointer``: ``#/`` + segments with ``~0``/``~1``, then URI-encoded), so
    pointers we write into overrides compare equal to the ones Spectral computes."""
    if not path:
        return "#"
    parts = []
    for segment in path:
        text = str(segment).replace("~", "~0").replace("/", "~1")
        parts.append(quote(text, safe="_.!~*'()/-"))
    return "#/" + "/".join(parts)

"""What the consumer and provider sides share: where pacts live, how a pact file is compared
with its committed copy, provider-state names, and which operation an interaction calls.

Pact files are ``contracts/pacts/<consumer>-<provider>.json`` (pacticipant names are the
component names of ``governance/dependencies.yaml``). Provider states are named from a
template and carry the same values as parameters (:func:`state`), so the provider's state
handlers read the parameters and can check the name agrees with them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from charter import config, dependencies
from charter.dependencies import ManifestError, Operation

PACT_DIR = config.ROOT / "contracts" / "pacts"
UPDATE_ENV = "CHARTER_UPDATE_PACTS"
REFRESH_COMMAND = f"{UPDATE_ENV}=1 .venv/bin/pytest tests/contracts/consumer -q"

# A JWT-shaped example: the consumer tests' token source returns it and the pact records it
# (a real token would change the pact on every run); the verifier replaces it with a real
# token of the consumer's identity.
EXAMPLE_TOKEN = ("eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9"
                 ".eyJzdWIiOiJleGFtcGxlIn0.c2lnbmF0dXJlLWZvci1wYWN0cw")
# The customer whose token orders forwards on the calls it makes on a user's behalf.
CUSTOMER = "alice"
BEARER_PATTERN = r"^Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
# Message pacts (events on charter.events) are <consumer>-<producer>-messages.json.
MESSAGES_SUFFIX = "-messages.json"
# Volatile metadata: the versions of the Pact libraries that wrote the file.
VOLATILE_METADATA = ("pactRust", "pactPython")


def state(template: str, **params: Any) -> tuple[str, dict[str, Any]]:
    """``(name, params)`` of a provider state: ``template`` formatted with ``params``."""
    return template.format(**params), params


def pact_path(consumer: str, provider: str, directory: Path = PACT_DIR) -> Path:
    """``<directory>/<consumer>-<provider>.json``."""
    return directory / f"{consumer}-{provider}.json"


def committed_pacts(directory: Path = PACT_DIR) -> list[Path]:
    """Every HTTP pact file in ``directory``, sorted (message pacts,
    ``*-messages.json``, are verified by ``tests/contracts/provider/test_message_pacts.py``)."""
    return sorted(p for p in directory.glob("*.json") if not p.name.endswith(MESSAGES_SUFFIX))


def load(path: Path) -> dict[str, Any]:
    """A pact file as JSON."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def normalised(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` without volatile metadata, interactions in a stable order."""
    result = json.loads(json.dumps(document))
    metadata = result.get("metadata") or {}
    for key in VOLATILE_METADATA:
        metadata.pop(key, None)
    result["interactions"] = sorted(
        result.get("interactions") or [],
        key=lambda i: (i.get("description", ""), json.dumps(i.get("providerStates"),
                                                            sort_keys=True)))
    return dict(result)


def write_normalised(document: Mapping[str, Any], path: Path) -> None:
    """Write ``document`` normalised, indented, with a final newline (the committed form)."""
    text = json.dumps(normalised(document), indent=2, sort_keys=True, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


def interactions(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The HTTP interactions of a pact."""
    for interaction in document.get("interactions") or []:
        if interaction.get("type", "Synchronous/HTTP") == "Synchronous/HTTP":
            yield interaction


_VERSION = re.compile(r"^/(v[0-9]+)(/.*)$")


def operation_of(provider: str, method: str, path: str) -> Operation | None:
    """The operation of ``openapi/<provider>/<version>.yaml`` that ``method path`` calls.

    ``path`` is as the consumer sends it to the service (``/v1/products/1``): the version
    prefix selects the spec, the rest is matched against the spec's path templates.
    ``None`` when no operation matches (no such spec, path or method).
    """
    found = _VERSION.match(path)
    if found is None:
        return None
    version, rest = found.groups()
    try:
        operations = dependencies.spec_operations(provider, version)
    except ManifestError:
        return None
    for op in operations.values():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(op.path))
        if op.method == method.upper() and re.fullmatch(pattern, rest):
            return op
    return None

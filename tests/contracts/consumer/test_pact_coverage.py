"""Every call in the dependency manifest has a pact interaction, and every interaction is
a call the manifest declares.

The manifest (governance/dependencies.yaml, read through :mod:`charter.dependencies`) is
the one list of service-to-service calls, kept equal to the adapters' real requests by
tests/test_dependency_manifest.py. An interaction covers a manifest entry when its method
and path resolve, through the provider's spec, to the entry's operation.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from charter import dependencies
from charter.dependencies import Call
from tests.contracts import pacts


def covered(directory: Path = pacts.PACT_DIR) -> dict[tuple[str, str], set[Call]]:
    """``(consumer, provider)`` → the operations its pact in ``directory`` covers."""
    found: dict[tuple[str, str], set[Call]] = defaultdict(set)
    for path in pacts.committed_pacts(directory):
        document = pacts.load(path)
        consumer, provider = document["consumer"]["name"], document["provider"]["name"]
        assert path.name == f"{consumer}-{provider}.json", f"{path.name}: pacticipant names"
        for interaction in pacts.interactions(document):
            request = interaction["request"]
            op = pacts.operation_of(provider, request["method"], request["path"])
            assert op is not None, (f"{path.name}: {interaction['description']!r} calls "
                                    f"{request['method']} {request['path']}, which is no "
                                    f"operation of openapi/{provider}/")
            found[(consumer, provider)].add(
                Call(api=provider, operation_id=op.operation_id, version=op.version))
    return found


def uncovered(directory: Path = pacts.PACT_DIR) -> list[str]:
    """The manifest's calls without an interaction in the pacts of ``directory``."""
    pacted = covered(directory)
    return [f"{service} → {call} ({kind})"
            for service, kind, call in dependencies.load().entries()
            if call not in pacted.get((service, call.api), set())]


def test_every_manifest_call_has_a_pact_interaction() -> None:
    missing = uncovered()
    assert not missing, (
        "calls in governance/dependencies.yaml without a pact interaction (add a consumer "
        f"case in tests/contracts/consumer/cases.py, then `{pacts.REFRESH_COMMAND}`): "
        + "; ".join(missing))


def test_every_pact_interaction_is_a_declared_call() -> None:
    manifest = dependencies.load()
    undeclared = []
    for (consumer, _provider), calls in covered().items():
        entry = manifest.service(consumer)
        declared = set(entry.calls) | set(entry.on_behalf_of_user)
        undeclared += [f"{consumer} → {call}" for call in calls - declared]
    assert not undeclared, ("pact interactions for calls governance/dependencies.yaml does "
                            f"not declare: {undeclared}")


def test_a_call_without_interaction_is_reported(tmp_path: Path) -> None:
    for path in pacts.committed_pacts():
        document = pacts.load(path)
        if path.name == "orders-catalog.json":  # drop every commit of a reservation
            document["interactions"] = [
                i for i in document["interactions"] if not i["request"]["path"].endswith(
                    "/commit")]
        (tmp_path / path.name).write_text(json.dumps(document), encoding="utf-8")
    assert uncovered(tmp_path) == ["orders → catalog v1 commit_reservation (calls)"]

"""Running consumer cases: a fresh Pact per case, its mock server, the pact file written."""

from __future__ import annotations

from pathlib import Path

from pact import Pact

from tests.contracts import pacts
from tests.contracts.consumer.cases import CASES, Case


def run_case(case: Case, directory: Path) -> None:
    """Declare ``case``'s interactions, drive its adapter against the mock server (which
    fails on any unexpected or missing request), and merge them into ``directory``'s pact."""
    pact = Pact(case.consumer, case.provider).with_specification("V4")
    case.define(pact)
    with pact.serve(addr="127.0.0.1") as server:
        case.drive(str(server.url))
    pact.write_file(directory)


def build_pact(consumer: str, provider: str, directory: Path) -> Path:
    """Run every case of the pair into ``directory``; the normalised pact file's path."""
    for case in CASES:
        if (case.consumer, case.provider) == (consumer, provider):
            run_case(case, directory)
    path = pacts.pact_path(consumer, provider, directory)
    pacts.write_normalised(pacts.load(path), path)
    return path

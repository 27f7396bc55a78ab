"""The ``charter gov …`` and ``charter contracts …`` command groups.

Each governance tool registers its own sub-commands from ``governance/<tool>/cli.py``
(a ``register(subparsers)`` function), so the tools stay independent of one another.
"""

from __future__ import annotations

import argparse
import importlib

#: governance tools with sub-commands under ``charter gov``
GOV_TOOLS = ("lint", "diff", "sla", "catalog", "deprecation", "k8s")
#: governance tools with sub-commands under ``charter contracts``
CONTRACT_TOOLS = ("pactcheck",)


def _register(group: argparse._SubParsersAction, tools: tuple[str, ...]) -> None:
    for tool in tools:
        module = importlib.import_module(f"governance.{tool}.cli")
        module.register(group)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``gov`` and ``contracts`` command groups to the ``charter`` parser."""
    gov = sub.add_parser("gov", help="API governance: lint, diff, publish, sla, catalog, "
                         "deprecations")
    _register(gov.add_subparsers(dest="gov_cmd", required=True), GOV_TOOLS)
    contracts = sub.add_parser("contracts", help="consumer contracts (Pact)")
    _register(contracts.add_subparsers(dest="contracts_cmd", required=True), CONTRACT_TOOLS)

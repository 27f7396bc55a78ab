"""``charter`` sub-commands of the catalog governance tool (placeholder until it lands)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this tool's sub-commands to *sub* (none yet)."""

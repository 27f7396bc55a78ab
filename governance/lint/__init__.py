"""Governance tool: lint (see docs/governance.md)."""

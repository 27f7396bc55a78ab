"""Governance tool: diff (see docs/governance.md)."""

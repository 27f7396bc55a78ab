"""Governance tool: deprecation (see docs/governance.md)."""

"""Governance tool: catalog (see docs/governance.md)."""

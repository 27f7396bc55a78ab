"""Governance tool: sla (see docs/governance.md)."""

"""Governance tool: pactcheck (see docs/governance.md)."""

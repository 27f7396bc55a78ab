"""Schemathesis on every spec, against the running platform."""

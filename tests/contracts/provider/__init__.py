"""Pact provider verification: each provider app served for real, every pact replayed."""

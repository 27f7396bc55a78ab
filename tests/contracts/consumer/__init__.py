"""Pact consumer tests: each component's real HTTP adapters against the Pact mock server."""

"""Contract tests: Pact consumer tests (``consumer/``) and provider verification (``provider/``)."""

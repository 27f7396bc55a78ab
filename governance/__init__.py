"""Governance as code: API style rules, breaking-change check, pact-vs-spec check, SLAs,
deprecations and the Backstage catalog, run as ``charter gov …`` and in ``make test``.

Tooling only: nothing here is imported by a running component (the runtime side of the
deprecation policy lives in :mod:`charter.deprecation`).
"""

"""Governance tool: lint — Charter's API style rules (docs/governance.md, "API style rules").

``charter gov lint`` runs Spectral with ``governance/spectral/charter.yaml`` (spectral:oas,
the OWASP API Security Top 10 2023 ruleset and the house rules), applies the reviewed
exceptions of ``governance/lint-exceptions.yaml`` as Spectral overrides, and adds the
findings of ``openapi-spec-validator``.
"""

"""The payments service: authorisations, captures, voids and refunds, never charged twice."""

"""The loyalty service: bonus points per customer in an append-only ledger."""

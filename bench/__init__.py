"""``make bench``: Charter's governed read, its direct mTLS hop, checkout and token
issuance, measured side by side with reference servers (``bench/peers/``) in one run.

Tooling only: nothing in the platform imports this package.
"""

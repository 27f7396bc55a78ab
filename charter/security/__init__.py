"""Security: JWT access-token verification (and, later, mutual TLS)."""

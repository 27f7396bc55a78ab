"""Security: JWT access-token verification, principals, mutual TLS (``mtls``, ``pki``)."""

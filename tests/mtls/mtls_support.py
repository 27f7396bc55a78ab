"""Helpers of the mTLS tests: raw TLS probes (servers and ports: tests.support.servers)."""

from __future__ import annotations

import socket
import ssl


def raw_tls_exchange(port: int, ctx: ssl.SSLContext, request: bytes) -> bytes:
    """Handshake, send ``request``, read the answer; TLS/socket errors propagate."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
            ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        tls.sendall(request)
        chunks: list[bytes] = []
        while True:
            data = tls.recv(65536)
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)

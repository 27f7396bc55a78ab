"""A trivial mTLS endpoint (a bare ASGI app on uvicorn with httptools) that measures the
mTLS load client's own ceiling in the same run. Run: ``python -m bench.trivial``."""

from __future__ import annotations

import os
from typing import Any

BODY = b'{"status":"ok"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every HTTP request with a fixed small JSON body."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    """Serve :func:`app` on ``BENCH_PORT`` with the catalog's certificate, client certs
    required (``BENCH_CERT``, ``BENCH_KEY``, ``BENCH_CA``)."""
    import ssl

    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["BENCH_PORT"]),
                loop="uvloop", http="httptools", access_log=False, log_level="warning",
                ssl_certfile=os.environ["BENCH_CERT"], ssl_keyfile=os.environ["BENCH_KEY"],
                ssl_ca_certs=os.environ["BENCH_CA"], ssl_cert_reqs=ssl.CERT_REQUIRED)


if __name__ == "__main__":
    main()

"""A load client that presents a client certificate (wrk cannot): asyncio (uvloop)
keep-alive HTTP/1.1 connections with an ``ssl.SSLContext``, spread over processes.

Hand-written because neither wrk nor hey can present a client certificate; it is kept
minimal (GET, Content-Length or chunked bodies) and its own ceiling is measured in every
run against a trivial mTLS endpoint (:mod:`bench.trivial`), so the reader can tell when
the client, not the server, is the limit.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from bench.stats import Result, percentile


@dataclass(frozen=True)
class Target:
    """What to load: an ``https`` GET with fixed headers, and the client's certificate."""

    host: str
    port: int
    path: str
    headers: dict[str, str]
    ca: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    def request(self) -> bytes:
        lines = [f"GET {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one whole response; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if "content-length" in fields:
        await reader.readexactly(int(fields["content-length"]))
    elif fields.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _connection(target: Target, ctx: ssl.SSLContext, start: float, end: float,
                      latencies: list[float], statuses: dict[int, int],
                      errors: list[str]) -> None:
    request = target.request()
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection(target.host, target.port, ssl=ctx)
        await asyncio.sleep(max(0.0, start - time.time()))
        while time.time() < end:
            began = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - began)
            statuses[status] = statuses.get(status, 0) + 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if writer is not None:
            writer.close()


async def _process_main(target: Target, connections: int, start: float, end: float
                        ) -> tuple[list[float], dict[int, int], list[str]]:
    ctx = target.context()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    await asyncio.gather(*(_connection(target, ctx, start, end, latencies, statuses, errors)
                           for _ in range(connections)))
    return latencies, statuses, errors


def _worker(args: tuple[Target, int, float, float]
            ) -> tuple[list[float], dict[int, int], list[str]]:
    target, connections, start, end = args
    try:
        import uvloop

        return uvloop.run(_process_main(target, connections, start, end))
    except ImportError:  # pragma: no cover - uvloop is installed with uvicorn[standard]
        return asyncio.run(_process_main(target, connections, start, end))


def run(name: str, target: Target, connections: int, seconds: float,
        processes: int = 2) -> Result:
    """Load ``target`` with ``connections`` kept-alive connections for ``seconds``."""
    processes = max(1, min(processes, connections))
    shares = [connections // processes + (1 if i < connections % processes else 0)
              for i in range(processes)]
    start = time.time() + 1.0 + 0.05 * connections  # every connection handshaken by then
    end = start + seconds
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_worker, [(target, share, start, end) for share in shares])
    latencies = sorted(x for part in parts for x in part[0])
    statuses: dict[int, int] = {}
    for _, counts, _ in parts:
        for code, n in counts.items():
            statuses[code] = statuses.get(code, 0) + n
    errors = [e for part in parts for e in part[2]]
    return Result(
        name=name, connections=connections, requests=len(latencies), seconds=seconds,
        rps=len(latencies) / seconds, p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        non_2xx=sum(n for code, n in statuses.items() if not 200 <= code < 300),
        errors=len(errors), statuses={str(k): v for k, v in statuses.items()})

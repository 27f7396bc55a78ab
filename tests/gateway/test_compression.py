"""Compression of JSON answers at the gateway: br or gzip by ``Accept-Encoding`` (q-values
honoured), small answers and already-encoded ones untouched, ``Vary: Accept-Encoding``."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import brotli
import httpx
import pytest

from services.gateway.app import Gateway
from services.gateway.compression import choose
from services.gateway.settings import GatewaySettings
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.anyio

PAD = {"X-Pad": "p" * 4000}  # the echo repeats it: a JSON answer of ≈ 5 KB


async def _raw(client: httpx.AsyncClient, path: str, headers: dict[str, str],
               method: str = "GET") -> tuple[httpx.Response, bytes]:
    """The response and its body exactly as sent (not decoded by httpx); without
    ``Accept-Encoding`` unless ``headers`` has one (httpx adds its own by default)."""
    request = client.build_request(method, path, headers=headers)
    if not any(k.lower() == "accept-encoding" for k in headers):
        del request.headers["accept-encoding"]
    r = await client.send(request, stream=True)
    try:
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    finally:
        await r.aclose()
    return r, raw


def _vary(r: httpx.Response) -> set[str]:
    return {v.strip().lower() for v in r.headers.get("vary", "").split(",") if v.strip()}


@pytest.mark.parametrize("accept, coding, decode", [
    ("gzip", "gzip", gzip.decompress),
    ("gzip, deflate, br", "br", brotli.decompress),
    ("br;q=0.5, gzip;q=0.8", "gzip", gzip.decompress),
    ("br;q=0, *", "gzip", gzip.decompress),
])
async def test_large_json_is_compressed_and_decodes_to_the_same_json(
        client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]],
        accept: str, coding: str, decode: Callable[[bytes], bytes]) -> None:
    headers = {**bearer(), **PAD}
    plain, plain_raw = await _raw(client, "/catalog/v1/products", headers)
    assert "content-encoding" not in plain.headers  # no Accept-Encoding: as it was
    r, raw = await _raw(client, "/catalog/v1/products", {**headers, "Accept-Encoding": accept})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == coding
    assert int(r.headers["content-length"]) == len(raw) < len(plain_raw) / 4
    assert "accept-encoding" in _vary(r)
    doc = json.loads(decode(raw))
    expected = json.loads(plain_raw)
    for volatile in ("accept-encoding", "x-correlation-id", "traceparent"):  # per request
        doc["headers"].pop(volatile, None)
        expected["headers"].pop(volatile, None)
    assert doc == expected and doc["headers"]["x-pad"] == PAD["X-Pad"]


@pytest.mark.parametrize("accept", ["gzip;q=0", "identity", "deflate", "br;q=0, gzip;q=0",
                                    "gzip;q=abc"])
async def test_refused_or_unknown_codings_get_identity(
        client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]], accept: str) -> None:
    r, raw = await _raw(client, "/catalog/v1/products",
                        {**bearer(), **PAD, "Accept-Encoding": accept})
    assert r.status_code == 200 and "content-encoding" not in r.headers
    assert json.loads(raw)["headers"]["x-pad"] == PAD["X-Pad"]
    assert "accept-encoding" in _vary(r)


async def test_small_answers_are_not_compressed(client: httpx.AsyncClient) -> None:
    live, raw = await _raw(client, "/health/live", {"Accept-Encoding": "gzip"})
    assert live.status_code == 200 and json.loads(raw)["status"] == "ok"
    assert "content-encoding" not in live.headers and "accept-encoding" in _vary(live)
    problem, raw = await _raw(client, "/catalog/v1/products", {"Accept-Encoding": "gzip"})
    assert problem.status_code == 401 and "content-encoding" not in problem.headers
    assert json.loads(raw)["status"] == 401 and len(raw) < 1024


async def test_streamed_json_is_compressed_as_it_streams(
        client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]]) -> None:
    size = 300_000  # the echo streams it in 64 KiB chunks, without Content-Length
    r, raw = await _raw(client, "/catalog/v1/products",
                        {**bearer(), "X-Test-Big": str(size), "Accept-Encoding": "br"})
    assert r.headers["content-encoding"] == "br" and "content-length" not in r.headers
    assert brotli.decompress(raw) == b"x" * size
    g, graw = await _raw(client, "/catalog/v1/products",
                         {**bearer(), "X-Test-Big": str(size), "Accept-Encoding": "gzip"})
    assert g.headers["content-encoding"] == "gzip" and gzip.decompress(graw) == b"x" * size


async def test_non_json_and_head_are_not_compressed(client: httpx.AsyncClient) -> None:
    page, _ = await _raw(client, "/", {"Accept-Encoding": "gzip"})
    assert page.status_code == 200 and "content-encoding" not in page.headers
    head, body = await _raw(client, "/catalog/v1/openapi.json", {"Accept-Encoding": "gzip"},
                            method="HEAD")
    assert head.status_code == 200 and body == b"" and "content-encoding" not in head.headers
    spec, raw = await _raw(client, "/catalog/v1/openapi.json", {"Accept-Encoding": "gzip"})
    assert spec.headers["content-encoding"] == "gzip"  # the gateway's own JSON too
    assert json.loads(gzip.decompress(raw))["servers"][0]["url"] == "/catalog/v1"


@pytest.mark.parametrize("header, encoded", [
    ((b"content-encoding", b"gzip"), True),  # already encoded by the service
    ((b"cache-control", b"private, no-transform"), False),  # RFC 9111: do not transform
])
async def test_encoded_or_no_transform_answers_pass_unchanged(
        make_gateway: Callable[..., Gateway], bearer: Callable[..., dict[str, str]],
        asgi_server: Callable[..., ThreadServer], header: tuple[bytes, bytes],
        encoded: bool) -> None:
    body = json.dumps({"items": ["x" * 5000]}).encode()
    if encoded:
        body = gzip.compress(body)

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), header,
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    gateway = make_gateway(upstreams={"catalog": asgi_server(upstream).url})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        r, raw = await _raw(http, "/catalog/v1/products", {**bearer(), "Accept-Encoding": "br"})
    await gateway.upstreams.aclose()
    assert raw == body
    assert r.headers.get("content-encoding") == ("gzip" if encoded else None)


async def test_compression_can_be_turned_off(
        make_gateway: Callable[..., Gateway], bearer: Callable[..., dict[str, str]]) -> None:
    gateway = make_gateway(GatewaySettings(rate_limit=0, compression=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        r, _ = await _raw(http, "/catalog/v1/products",
                          {**bearer(), **PAD, "Accept-Encoding": "gzip"})
    await gateway.upstreams.aclose()
    assert r.status_code == 200 and "content-encoding" not in r.headers


@pytest.mark.parametrize("header, coding", [
    (b"gzip", "gzip"), (b"br", "br"), (b"gzip, br", "br"), (b"GZIP;Q=1", "gzip"),
    (b"br;q=0.1, gzip;q=0.2", "gzip"), (b"*;q=0.3", "br"), (b"br;q=0, *;q=0.3", "gzip"),
    (b"gzip;q=0, *", "br"), (b"*;q=0", None), (b"", None), (b"compress", None),
    (b"gzip;q=2", None), (b" , ;q=1, gzip ; q=0.5 ", "gzip"),
])
def test_choose_honours_q_values(header: bytes, coding: str | None) -> None:
    assert choose(header) == coding

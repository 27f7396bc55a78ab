"""Several uvicorn workers per service, on the real platform (``charter up`` with
``CHARTER_WORKERS=2``): ``/metrics`` sums every worker, and a revoked token is refused
by every worker.

Which worker served a request is read from the multiprocess metrics files
(``<var>/metrics/<component>/counter_<pid>.db``, one per worker). Requests go over
fresh connections, so the kernel hands them to either worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from charter.security.tokens import token_problem
from tests.support.platform import ROOT, Platform, running
from tests.support.polling import wait_until

pytestmark = pytest.mark.e2e

WORKERS = 2
POLL_INTERVAL = 1.0  # AUTH_REVOCATION_POLL_INTERVAL's default
GET_PRODUCT = "services.catalog.api.get_product"  # the operation label


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One platform, every service with two workers (the gateway too: rate limit off)."""
    tmp_path = tmp_path_factory.mktemp("workers")
    with running(tmp_path, "sqlite", extra_env={"CHARTER_WORKERS": str(WORKERS)}) as up:
        yield up


def metrics_dir(platform: Platform, component: str) -> Path:
    return Path(platform.env["CHARTER_VAR_DIR"]) / "metrics" / component


def _children(pid: int) -> list[int]:
    """Child process ids of ``pid`` (from ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def worker_pids(platform: Platform, component: str) -> set[int]:
    """The worker processes of ``component``: the runner's children running its factory
    (``charter.serve worker``), or the workers of a uvicorn ``--workers`` parent."""
    factory = "auth.app" if component == "auth" else f"services.{component}.app"
    own = [p for p in _children(platform.proc.pid) if factory in _cmdline(p)]
    spawned = {w for p in own for w in _children(p) if "spawn_main" in _cmdline(w)}
    return spawned or set(own)


def per_worker(platform: Platform, component: str, sample: str,
               **labels: str) -> Counter[int]:
    """``sample``'s value summed over samples with ``labels``, per worker pid."""
    found: Counter[int] = Counter()
    for path in metrics_dir(platform, component).glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, got, _help = json.loads(key)
            if name == sample and all(got.get(k) == v for k, v in labels.items()):
                found[pid] += int(value)
    return found


def scraped(platform: Platform, component: str, sample: str, **labels: str) -> float:
    """``sample`` summed over samples with ``labels``, as ``/metrics`` reports it."""
    with platform.client("charter-cli", timeout=10) as http:
        r = http.get(f"{platform.url(component)}/metrics")
    assert r.status_code == 200, r.text
    return sum(s.value for family in text_string_to_metric_families(r.text)
               for s in family.samples
               if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))


def fresh_gets(platform: Platform, url: str, headers: dict[str, str],
               count: int) -> list[httpx.Response]:
    """``count`` GETs, each over its own new connection, eight at a time."""
    def one(_: int) -> httpx.Response:
        with platform.client("charter-cli", timeout=10) as http:
            return http.get(url, headers=headers)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))


def until_both_workers(send: Callable[[], list[httpx.Response]],
                       served: Callable[[], Counter[int]]) -> list[httpx.Response]:
    """Send batches until every worker has answered at least one (at most 10 batches)."""
    answers: list[httpx.Response] = []
    for _ in range(10):
        answers += send()
        if len([pid for pid, n in served().items() if n > 0]) >= WORKERS:
            return answers
    raise AssertionError(f"one worker answered everything: {served()}")


@pytest.fixture(scope="module")
def token(platform: Platform) -> str:
    return platform.token("demo-cli")


@pytest.fixture(scope="module")
def product_url(platform: Platform, token: str) -> str:
    def all_started() -> bool:
        return all(len(worker_pids(platform, c)) >= WORKERS for c in ("catalog", "gateway"))

    # The second worker of each may start well after the first answered /health/ready
    # on a loaded machine (CI): allow for it.
    wait_until(all_started, timeout=120, interval=0.2, what=f"{WORKERS} workers each")
    with platform.client("charter-cli", timeout=10) as http:
        r = http.get(f"{platform.url('catalog')}/v1/products", params={"page_size": 1},
                     headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return f"{platform.url('catalog')}/v1/products/{r.json()['items'][0]['id']}"


def test_metrics_total_across_workers_equals_requests_sent(
        platform: Platform, token: str, product_url: str) -> None:
    labels = {"operation": GET_PRODUCT, "status": "200"}
    before = per_worker(platform, "catalog", "charter_http_requests_total", **labels)
    scraped_before = scraped(platform, "catalog", "charter_http_requests_total", **labels)
    assert scraped_before == sum(before.values())
    headers = {"Authorization": f"Bearer {token}"}

    answers = until_both_workers(
        lambda: fresh_gets(platform, product_url, headers, 20),
        lambda: per_worker(platform, "catalog", "charter_http_requests_total",
                           **labels) - before)

    assert all(r.status_code == 200 for r in answers), {r.status_code for r in answers}
    sent = len(answers)

    def counted() -> Counter[int]:
        return per_worker(platform, "catalog", "charter_http_requests_total", **labels) - before

    # a request is counted just after its answer is sent: wait for the last ones
    wait_until(lambda: sum(counted().values()) >= sent, timeout=5, interval=0.05,
               what=f"{sent} requests counted")
    served = counted()
    assert len(served) == WORKERS and sum(served.values()) == sent, served
    # whichever worker answers the scrape, /metrics reports every worker's requests once
    for _ in range(4):
        assert scraped(platform, "catalog", "charter_http_requests_total",
                       **labels) - scraped_before == sent
    print(f"{sent} requests, per worker: {dict(served)}")


def demo_cli_secret(platform: Platform) -> str:
    """The demo client's secret, resolved exactly as ``charter token`` resolves it."""
    done = subprocess.run(
        [sys.executable, "-c",
         "from charterctl.cli import client_secret; print(client_secret('demo-cli', None))"],
        env=platform.env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_revoked_token_is_refused_by_every_worker(platform: Platform,
                                                  product_url: str) -> None:
    token = platform.token("demo-cli")  # its own token: the other test's stays valid
    headers = {"Authorization": f"Bearer {token}"}
    via_gateway = product_url.replace(platform.url("catalog"),
                                      f"{platform.url('gateway')}/catalog")
    # both workers of each component accept it first (and cache it as verified)
    gateway_before = sum(per_worker(platform, "gateway", "charter_gateway_requests_total",
                                    api="catalog").values())
    answered = {}
    for name, url in (("catalog", product_url), ("gateway", via_gateway)):
        accepted = fresh_gets(platform, url, headers, 16)
        assert all(r.status_code == 200 for r in accepted)
        answered[name] = len(accepted)

    with platform.client("charter-cli", timeout=10) as http:
        revoke = http.post(f"{platform.url('auth')}/oauth/revoke", data={"token": token},
                           auth=("demo-cli", demo_cli_secret(platform)))
    assert revoke.status_code == 200, revoke.text
    time.sleep(POLL_INTERVAL * 2 + 0.5)  # every worker has polled the feed since

    revoked = {k: v for k, v in token_problem("revoked").body().items() if k != "type"}
    refusals: dict[str, tuple[str, str, dict[str, str]]] = {  # component → url, sample
        "catalog": (product_url, "charter_http_requests_total",
                    {"operation": GET_PRODUCT, "status": "401"}),
        "gateway": (via_gateway, "charter_gateway_requests_total",
                    {"api": "catalog", "status": "401"}),
    }
    for component, (url, sample, labels) in refusals.items():
        before = per_worker(platform, component, sample, **labels)

        def send(u: str = url) -> list[httpx.Response]:
            return fresh_gets(platform, u, headers, 12)

        def served(c: str = component, s: str = sample, lb: dict[str, str] = labels,
                   b: Counter[int] = before) -> Counter[int]:
            return per_worker(platform, c, s, **lb) - b

        answers = until_both_workers(send, served)
        statuses = Counter(r.status_code for r in answers)
        assert statuses == {401: len(answers)}, f"{component}: {statuses}"
        assert all({k: v for k, v in r.json().items() if k != "type"} == revoked
                   for r in answers), answers[0].text
        answered[component] += len(answers)

    # the gateway's own /metrics page (not Flask's exporter) sums its workers too
    def gateway_counted() -> int:
        found = per_worker(platform, "gateway", "charter_gateway_requests_total", api="catalog")
        return sum(found.values()) - gateway_before

    wait_until(lambda: gateway_counted() >= answered["gateway"], timeout=5, interval=0.05,
               what="every gateway answer counted")
    assert gateway_counted() == answered["gateway"]
    for _ in range(4):
        assert scraped(platform, "gateway", "charter_gateway_requests_total",
                       api="catalog") - gateway_before == answered["gateway"]

"""Prometheus, Alertmanager and a Slack-compatible webhook receiver on this machine,
configured from the files in deploy/ for a test (``tests/deploy/test_alerting_real.py``).

The production files are the input, rewritten only where a test must differ: targets on
127.0.0.1 and free ports, the platform's PKI directory, a 1 s scrape/evaluation, short
windows in the SLO rules (:func:`short_windows`), and short grouping in Alertmanager.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.databases import skip_or_fail
from tests.support.platform import COMPONENTS, Platform
from tests.support.polling import wait_until
from tests.support.servers import free_ports

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
#: Production SLO windows → the test's (rate() needs 2+ samples: at 1 s, 4 s and up).
SHORT = {"5m": "4s", "30m": "6s", "1h": "8s", "6h": "10s", "3d": "12s"}
_RANGE = re.compile(r"\[(5m|30m|1h|6h|3d)\]")


def binary(*names: str) -> str:
    """The first of ``names`` on PATH; skip (laptop) or fail (CI) when none is."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    skip_or_fail(f"{' / '.join(names)} not on PATH (Debian's prometheus and "
                 "prometheus-alertmanager packages; `make alerting`)")


def short_windows(text: str) -> str:
    """A rule file with the SLO windows shortened and every ``for:`` cut to 1 s; the rule
    and record names, thresholds and labels stay those of production."""
    doc = yaml.safe_load(text)
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["expr"] = _RANGE.sub(lambda m: f"[{SHORT[m.group(1)]}]", rule["expr"])
            if "for" in rule:
                rule["for"] = "1s"
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class Receiver:
    """A Slack-compatible incoming webhook: records every JSON body it is sent."""

    url: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def texts(self) -> list[str]:
        """Every message flattened to one string (title, text, fields) for matching."""
        with self.lock:
            return [json.dumps(m) for m in self.messages]

    def find(self, *needles: str) -> str | None:
        """The first message containing every needle."""
        return next((t for t in self.texts() if all(n in t for n in needles)), None)


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """A local webhook on a free port (``http.server``), stopped at exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/charter")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with receiver.lock, suppress(ValueError):
                receiver.messages.append(json.loads(body))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        tail = log.read_text(errors="replace")[-3000:]
        raise AssertionError(f"exited {proc.returncode}:\n{tail}")
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def alertmanager(workdir: Path, webhook: str) -> Iterator[str]:
    """Alertmanager with deploy/alertmanager/alertmanager.yml, its webhook URL file
    holding ``webhook`` and grouping shortened; yields its URL."""
    exe = binary("prometheus-alertmanager", "alertmanager")
    doc = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    url_file = workdir / "slack-webhook-url"
    url_file.write_text(webhook)
    for receiver in doc["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(url_file)
    for route in (doc["route"], *doc["route"].get("routes", [])):
        route.update({"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"})
    config = workdir / "alertmanager.yml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    port, = free_ports(1)
    log = workdir / "alertmanager.log"
    proc = subprocess.Popen(
        [exe, f"--config.file={config}", f"--storage.path={workdir / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(f"{url}/-/ready", proc, log), timeout=20, interval=0.2,
                   what="alertmanager ready")
        yield url
    finally:
        _stop(proc)


def prometheus_config(platform: Platform, workdir: Path, alertmanager_url: str) -> Path:
    """deploy/prometheus/prometheus.yml aimed at the running platform: its targets on
    127.0.0.1, its PKI, 1 s intervals, and the short-window copies of every rule file."""
    doc = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    doc["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    rule_files = []
    for name in doc["rule_files"]:
        (workdir / name).write_text(short_windows((DEPLOY / "prometheus" / name).read_text()))
        rule_files.append(str(workdir / name))
    doc["rule_files"] = rule_files
    doc["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}]
    pki = Path(platform.env["CHARTER_VAR_DIR"]) / "pki"
    job = next(j for j in doc["scrape_configs"] if j["job_name"] == "charter")
    job["tls_config"] = {key: str(pki / Path(path).name)
                         for key, path in job["tls_config"].items()}
    for static in job["static_configs"]:
        service = static["labels"]["service"]
        assert service in COMPONENTS, service
        static["targets"] = [f"127.0.0.1:{platform.env[service.upper() + '_PORT']}"]
        if not platform.mtls:
            static["labels"]["__scheme__"] = "http"
    doc["scrape_configs"] = [job]  # node_exporter and self-scrape: not on this machine
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config


@contextmanager
def prometheus(config: Path, workdir: Path) -> Iterator[str]:
    """Prometheus on a free port with ``config`` (checked by promtool first)."""
    exe = binary("prometheus")
    promtool = shutil.which("promtool")
    if promtool:
        done = subprocess.run([promtool, "check", "config", str(config)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    port, = free_ports(1)
    log = workdir / "prometheus.log"
    proc = subprocess.Popen(
        [exe, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(f"{url}/-/ready", proc, log), timeout=30, interval=0.2,
                   what="prometheus ready")
        yield url
    finally:
        _stop(proc)


def query(url: str, promql: str) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result

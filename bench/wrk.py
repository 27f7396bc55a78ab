"""wrk (Debian's package) for the plain-HTTP figures: run it, parse its report.

A small Lua script sets the headers and method and counts the answers by status, so a
3xx (which wrk's own "Non-2xx or 3xx" line would not separate) is still reported.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.stats import Result

# wrk runs `done` once, after every thread: per-thread tables are merged there.
LUA = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  statuses = {}
end
function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do total[k] = (total[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, string.format('"%s": %d', k, v)) end
  io.write("STATUSES {" .. table.concat(parts, ", ") .. "}\n")
  io.write(string.format("P50US %d\nP99US %d\n", latency:percentile(50), latency:percentile(99)))
end
"""


def available() -> str | None:
    """The path of wrk, or ``None``."""
    return shutil.which("wrk")


def _script(method: str, headers: dict[str, str], body: str | None) -> str:
    lines = [f"wrk.method = {json.dumps(method)}"]
    for key, value in headers.items():
        lines.append(f"wrk.headers[{json.dumps(key)}] = {json.dumps(value)}")
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(body)}")
    return "\n".join(lines) + "\n" + LUA


def parse(name: str, connections: int, output: str) -> Result:
    """A :class:`Result` from wrk's report plus the Lua script's lines."""
    def grab(pattern: str, default: str = "0") -> str:
        found = re.search(pattern, output, re.MULTILINE)
        return found.group(1) if found else default

    match = re.search(r"^STATUSES (\{.*\})$", output, re.MULTILINE)
    if match is None or "Requests/sec" not in output:
        raise ValueError(f"unexpected wrk output:\n{output}")
    statuses: dict[str, int] = json.loads(match.group(1))
    requests = int(grab(r"^\s*(\d+) requests in"))
    seconds = float(grab(r"requests in ([\d.]+)s", "0"))
    unit = grab(r"requests in [\d.]+(m?s)", "s")
    seconds = seconds * 60 if unit == "m" else seconds
    socket_errors = sum(int(n) for n in re.findall(
        r"(?:connect|read|write|timeout) (\d+)", grab(r"^\s*Socket errors: (.*)$", "")))
    return Result(
        name=name, connections=connections, requests=requests, seconds=seconds,
        rps=float(grab(r"^Requests/sec:\s*([\d.]+)")),
        p50_ms=int(grab(r"^P50US (\d+)")) / 1000, p99_ms=int(grab(r"^P99US (\d+)")) / 1000,
        non_2xx=sum(n for code, n in statuses.items() if not code.startswith("2")),
        errors=socket_errors, statuses=statuses)


def run(name: str, url: str, connections: int, seconds: float, *,
        headers: dict[str, str] | None = None, method: str = "GET",
        body: str | None = None, threads: int = 1) -> Result:
    """``wrk -t<threads> -c<connections> -d<seconds> --latency`` against ``url``."""
    binary = available()
    if binary is None:
        raise FileNotFoundError("wrk is not installed (Debian package `wrk`; make wrk)")
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "bench.lua"
        script.write_text(_script(method, headers or {}, body))
        argv = [binary, f"-t{min(threads, connections)}", f"-c{connections}",
                f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s",
                "-s", str(script), url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                              check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse(name, connections, done.stdout)

"""``python -m bench.replication [--json PATH]``: streaming-replication lag of a local standby.

Sets up a standby of the local PostgreSQL server (:func:`charterctl.replica.setup`, on a
free port, with ``--allow-local-replication``: root only, it may add the replication line
to pg_hba.conf), commits a small write on the primary every ``--interval`` for
``--seconds`` and times each until the standby has replayed it
(:func:`charterctl.replica.measure_lag`), then tears the standby down (stopped, slot
dropped, data directory removed). The JSON is
``{"samples": [{"t": 0.1, "lag_ms": 3.2}, ...], "max_lag_ms": ..., "p50_lag_ms": ...}``
plus ``setup_seconds``. Exit status 0, or 2 with one line on stderr when it cannot run.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from charterctl import replica


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(primary: str, *, seconds: float, interval: float) -> dict[str, Any]:
    """Set up a throw-away standby of ``primary``, measure, tear it down."""
    tag = uuid.uuid4().hex[:8]
    spec = replica.Standby(primary=primary, port=free_port(),
                           data_dir=Path(f"/tmp/charter-bench-replica-{tag}"),
                           slot=f"charter_bench_{tag}")
    started = time.monotonic()
    replica.setup(spec, allow_local_replication=True)
    try:
        setup_seconds = time.monotonic() - started
        result = replica.measure_lag(spec, seconds=seconds, interval=interval)
    finally:
        replica.teardown(spec)
    return {**result, "setup_seconds": round(setup_seconds, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replication", description=__doc__)
    parser.add_argument("--primary", default=replica.DEFAULT_PRIMARY)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the result here")
    args = parser.parse_args(argv)
    try:
        result = run(args.primary, seconds=args.seconds, interval=args.interval)
    except replica.ReplicaError as exc:
        print(f"bench.replication: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"replication lag over {len(result['samples'])} writes: "
          f"p50 {result['p50_lag_ms']:.1f} ms, max {result['max_lag_ms']:.1f} ms "
          f"(standby set up in {result['setup_seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

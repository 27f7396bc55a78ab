"""``python -m bench.fault_report [--quick] [--from-data DIR] [--out DIR] [--skip NAME]``:
run the failover test, a chaos run, the benchmark, the replication lag measurement and a
restore drill, then render ``reports/<YYYY-MM-DD>/index.html`` and ``index.md``.

``--from-data DIR`` renders from the JSON kept in ``DIR`` (a report's ``data/``) into its
parent, running nothing. Exit status 0 when every producer ran and succeeded, 1 when one
did not (the report is written anyway, saying which and why).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.fault_report import collect, render, sources

REPORTS = collect.ROOT / "reports"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.fault_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="shorter failover and chaos runs, bench --quick (a smoke test)")
    parser.add_argument("--from-data", type=Path, metavar="DIR",
                        help="render from the JSON in DIR only (run nothing)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where the report goes (default reports/<YYYY-MM-DD>/, or the "
                        "parent of --from-data)")
    parser.add_argument("--skip", action="append", default=[], choices=sources.PRODUCERS,
                        help="do not run this producer (repeatable)")
    args = parser.parse_args(argv)
    if args.from_data is not None:
        data = args.from_data.resolve()
        if not data.is_dir():
            parser.error(f"{data} is not a directory")
        out = args.out or data.parent
        label = out.name
    else:
        label = datetime.now(UTC).strftime("%Y-%m-%d")
        out = args.out or REPORTS / label
        data = out / "data"
        collect.collect(data, args.quick, frozenset(args.skip))
    inputs = sources.load(data, label)
    done = render.render(inputs, out)
    print("\n" + render.summary_table(inputs) + "\n")
    print(f"report: {done.html}\n        {done.markdown}")
    if args.from_data is not None:
        return 0
    failed = [name for name in sources.PRODUCERS
              if inputs.doc(name) is None or (inputs.runs.get(name) or sources.Run(0)).exit_code]
    if failed:
        print(f"report: not run or failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``charter gov k8s``: write (or ``--check``) ``deploy/k8s/base/generated/``."""

from __future__ import annotations

import argparse
import sys

from charter import config
from governance.k8s import generate


def cmd_k8s(args: argparse.Namespace) -> int:
    """Generate the per-component manifests and NetworkPolicies, or check them."""
    try:
        rendered = generate.render()
    except (generate.K8sError, ValueError) as exc:
        print(f"charter gov k8s: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = generate.drift(rendered)
        if stale:
            print(f"the Kubernetes base is out of date ({', '.join(stale)}): "
                  "run `charter gov k8s`", file=sys.stderr)
            return 1
        print("deploy/k8s/base/generated/: up to date")
        return 0
    changed = generate.write(rendered)
    for path in changed:
        print(f"wrote {path.relative_to(config.ROOT)}")
    if not changed:
        print("deploy/k8s/base/generated/: up to date")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``k8s`` to ``charter gov``."""
    p = sub.add_parser("k8s", help="generate the Kubernetes base (Deployments, Services, "
                       "NetworkPolicies from the catalog's dependsOn) under deploy/k8s/base/")
    p.add_argument("--check", action="store_true",
                   help="only check that the files on disk are up to date (exit 1)")
    p.set_defaults(func=cmd_k8s)


def main(argv: list[str] | None = None) -> int:
    """``python -m governance.k8s [--check]``."""
    parser = argparse.ArgumentParser(prog="python -m governance.k8s")
    parser.add_argument("--check", action="store_true")
    return cmd_k8s(parser.parse_args(argv))

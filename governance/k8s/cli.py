"""``charter gov k8s``: write (or ``--check``) ``deploy/k8s/base/generated/``."""

from __future__ import annotations

import argparse

from charter import config
from governance import generated_files
from governance.k8s import generate


def cmd_k8s(args: argparse.Namespace) -> int:
    """Generate the per-component manifests and NetworkPolicies, or check them."""
    return generated_files.run(
        "k8s", "the Kubernetes base", "deploy/k8s/base/generated/",
        generated_files.Generator(generate.render, generate.drift, generate.write,
                                  (generate.K8sError,)),
        check=args.check, root=config.ROOT)


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

"""Commands for containers: ``charter serve``, ``charter health`` and ``charter secrets init``.

The Docker image's ``ENTRYPOINT`` is ``charter``: ``docker run <image> serve catalog`` runs
one component, ``charter health catalog`` is its health check, and the compose file's
one-shot services use ``charter pki init``, ``charter seed`` and ``charter messaging
declare`` (``docs/deployment.md``).

``charter serve NAME`` checks the component's settings (production mode fails closed,
exit 2 naming every missing variable), checks its certificates, then runs exactly what
``charter up`` runs for it (:func:`charterctl.runner.command` and
:func:`charterctl.runner.child_env`): with one worker (``CHARTER_WORKERS=1``, what compose
sets: replicas scale a service, not processes) the process *becomes* uvicorn (``exec``),
so the container's signals reach it directly; with several it supervises the workers like
``charter up`` does and stops them on SIGTERM.

``charter secrets init --env-file deploy/compose.env`` writes every secret the production
configuration of the compose deployment needs, random (``secrets.token_urlsafe``), into a
new file of mode 0600; it refuses to overwrite one without ``--force``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from charter import config, serve
from charterctl import pki, rates, registry, runner, supervisor

DEFAULT_ENV_FILE = "deploy/compose.env"
DEFAULT_PUBLIC_URL = "https://charter.localhost"
DEFAULT_ISSUER = "https://auth.charter.localhost"
DB_PREFIX = "charter"
SECRET_BYTES = 32


# -- charter serve ---------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    """Run one component in the foreground (the container's main process)."""
    comp = registry.select(args.component)[0]
    problems = runner.check_config([comp])
    if problems:
        print(f"charter serve {comp.name}: refusing to start:\n" + "\n".join(problems),
              file=sys.stderr, flush=True)
        return 2
    try:
        if config.uses_mtls(comp.name):
            pki.ensure_pki([comp.name])
        count = runner.worker_count(comp)
        argv, env = runner.command(comp, count), runner.child_env(comp, count)
    except config.ConfigError as exc:
        print(f"charter serve {comp.name}: {exc}", file=sys.stderr, flush=True)
        return 2
    if count == 1:
        sys.stdout.flush()
        os.execve(argv[0], argv, env)  # uvicorn becomes the container's process
    return _supervise(comp.name, argv, env, count)


def _supervise(name: str, argv: list[str], env: dict[str, str], count: int) -> int:
    """Run ``count`` worker processes of ``name``, restarted when one exits, until
    SIGTERM/SIGINT; 1 when a worker keeps crashing."""
    sup = supervisor.Supervisor()
    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        sup.begin_shutdown()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sup.start(name, lambda: subprocess.Popen(argv, env=env), count)
    try:
        while not stopping:
            sup.check()
            time.sleep(runner.POLL_INTERVAL)
        return 0
    except supervisor.SupervisionError as exc:
        print(f"charter serve {name}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        sup.shutdown()


# -- charter health --------------------------------------------------------------------


def health_url(component: str, ready: bool = False) -> str:
    """The local URL of ``component``'s ``/health/live`` (or ``/health/ready``): https with
    mutual TLS on, on ``127.0.0.1`` and its configured port."""
    scheme = "https" if config.uses_mtls(component) else "http"
    path = "ready" if ready else "live"
    return f"{scheme}://127.0.0.1:{config.port(component)}/health/{path}"


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the component in this container answers its health check with 200."""
    name = args.component or config.env("CHARTER_SERVICE")
    if not name:
        print("charter health: name the component (or set CHARTER_SERVICE)", file=sys.stderr)
        return 2
    comp = registry.select(name)[0]
    url = health_url(comp.name, ready=args.ready)
    ok = serve.probe(url, identity=comp.name, timeout=args.timeout)
    if not ok:
        print(f"charter health: {url} did not answer 200", file=sys.stderr)
    return 0 if ok else 1


# -- charter secrets init --------------------------------------------------------------


def _token() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def compose_secrets(*, public_url: str = DEFAULT_PUBLIC_URL, issuer: str = DEFAULT_ISSUER,
                    db_prefix: str = DB_PREFIX) -> dict[str, str]:
    """Every variable the compose deployment's production configuration needs, with fresh
    random secrets: database roles and URLs (one database per component, on the compose
    host ``postgres``), RabbitMQ, Redis, auth's session secret, the service clients'
    secrets, Grafana's admin password, and an empty Slack webhook placeholder."""
    from auth import scopes
    from charter.security.client_credentials import client_secret_variable

    values: dict[str, str] = {
        "CHARTER_PUBLIC_URL": public_url,
        "AUTH_ISSUER": issuer,
        "POSTGRES_PASSWORD": _token(),
        "CHARTER_DB_PREFIX": db_prefix,
    }
    for comp in registry.COMPONENTS.values():
        if not comp.has_database:
            continue
        stem, password = comp.name.upper(), _token()
        role = f"{db_prefix}_{comp.name}"
        values[f"{stem}_DB_PASSWORD"] = password
        values[f"{stem}_DATABASE_URL"] = (
            f"postgresql+psycopg://{role}:{password}@postgres:5432/{role}")
    # catalog's read-only use cases on the streaming standby (docker-compose.yml)
    values["CATALOG_DATABASE_READ_URL"] = values["CATALOG_DATABASE_URL"].replace(
        "@postgres:5432/", "@catalog-db-replica:5432/")
    rabbit = _token()
    redis = _token()
    values.update({
        "RABBITMQ_DEFAULT_USER": "charter",
        "RABBITMQ_DEFAULT_PASS": rabbit,
        "AMQP_URL": f"amqp://charter:{rabbit}@rabbitmq:5672/",
        "REDIS_PASSWORD": redis,
        "REDIS_URL": f"redis://:{redis}@redis:6379/0",
        "AUTH_SESSION_SECRET": _token(),
    })
    for client in sorted(scopes.service_clients()):
        values[client_secret_variable(client)] = _token()
    values.update({
        "GF_SECURITY_ADMIN_USER": "admin",
        "GF_SECURITY_ADMIN_PASSWORD": _token(),
        # placeholder: Alertmanager's notifications fail (in its log) until it is set
        "ALERTMANAGER_SLACK_WEBHOOK_URL": "",
    })
    return values


def write_env_file(path: Path, values: dict[str, str], *, force: bool = False) -> None:
    """Write ``values`` as ``KEY=value`` lines into ``path`` with mode 0600.

    Raises :class:`FileExistsError` when it exists and ``force`` is false. The file is
    written to a private temporary file and renamed into place.
    """
    if path.exists() and not force:
        raise FileExistsError(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"# Written by `charter secrets init` at {stamp}: secrets, never commit this",
             "# file (git-ignored). Regenerate with --force only before the first start: the",
             "# databases, RabbitMQ and Grafana keep the passwords they were created with.",
             *(f"{key}={value}" for key, value in values.items())]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    path.chmod(0o600)


def cmd_secrets_init(args: argparse.Namespace) -> int:
    """Generate the deployment's secrets into a new git-ignored env file."""
    path = Path(args.env_file)
    for name, url in (("--public-url", args.public_url), ("--issuer", args.issuer)):
        if not url.lower().startswith("https://"):
            print(f"charter secrets init: {name} must be an https:// URL", file=sys.stderr)
            return 2
    values = compose_secrets(public_url=args.public_url.rstrip("/"),
                             issuer=args.issuer.rstrip("/"), db_prefix=args.db_prefix)
    try:
        write_env_file(path, values, force=args.force)
    except FileExistsError:
        print(f"charter secrets init: {path} exists; --force replaces it (only before the "
              "first start)", file=sys.stderr)
        return 1
    secret_count = sum(1 for k in values if k.endswith(("PASSWORD", "SECRET", "PASS")))
    print(f"{path}: {len(values)} variables ({secret_count} secrets), mode 0600")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``serve``, ``health``, ``secrets`` and ``rates`` to the ``charter`` command."""
    names = ", ".join(registry.COMPONENTS)
    p = sub.add_parser("serve", help="run one component in the foreground (containers)")
    p.add_argument("component", help=f"one of: {names}")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("health", help="exit 0 when a local component answers its health "
                       "check (container health checks)")
    p.add_argument("component", nargs="?", help="default: CHARTER_SERVICE")
    p.add_argument("--ready", action="store_true", help="/health/ready instead of /health/live")
    p.add_argument("--timeout", type=float, default=3.0)
    p.set_defaults(func=cmd_health)

    secrets_cmd = sub.add_parser("secrets", help="deployment secrets").add_subparsers(
        dest="secrets_cmd", required=True)
    p = secrets_cmd.add_parser("init", help="generate every secret of the compose "
                               "deployment into a git-ignored env file (mode 0600)")
    p.add_argument("--env-file", default=DEFAULT_ENV_FILE,
                   help=f"where to write them (default {DEFAULT_ENV_FILE})")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--public-url", default=DEFAULT_PUBLIC_URL,
                   help="CHARTER_PUBLIC_URL, the portal's https:// URL")
    p.add_argument("--issuer", default=DEFAULT_ISSUER, help="AUTH_ISSUER, an https:// URL")
    p.add_argument("--db-prefix", default=DB_PREFIX,
                   help="prefix of each component's database and role (default charter)")
    p.set_defaults(func=cmd_secrets_init)
    rates.register(sub)

"""The ``charter`` command: run the platform, get tokens, migrate, rotate keys, disable
users."""

from __future__ import annotations

import argparse
import os
import sys

import httpx

from charter import config
from charterctl import backup, container, dlq, gov, logs, projections, registry


def client_secret(client: str, given: str | None) -> str:
    """The secret for ``client``: ``--secret``, else ``<CLIENT>_SECRET`` or
    ``<CLIENT>_CLIENT_SECRET`` from the environment, else (development mode only) the
    random secret ``charter up --dev`` generated under the var dir. Known development
    secrets are refused outside development mode."""
    if given:
        return given
    stem = client.upper().replace("-", "_")
    names = [f"{stem}_SECRET", f"{stem}_CLIENT_SECRET"]
    try:
        for name in names:
            if config.env(name) is not None:
                return config.secret(name)
        if config.is_development():
            for name in names:
                if (config.var_dir() / "secrets" / name).is_file():
                    return config.secret(name)
    except config.ConfigError as exc:
        raise SystemExit(f"charter token: {exc}") from None
    raise SystemExit(f"no secret for client {client!r}: pass --secret or set {names[0]}")


def cmd_token(args: argparse.Namespace) -> int:
    """Print an access token: client credentials, or ``--user`` through code + PKCE."""
    if args.user:
        return _user_token(args)
    data = {"grant_type": "client_credentials"}
    if args.scope:
        data["scope"] = args.scope
    url = (args.auth_url or config.service_url("auth")).rstrip("/") + "/oauth/token"
    try:
        resp = httpx.post(url, data=data, auth=(args.client, client_secret(args.client,
                                                                           args.secret)),
                          timeout=10)
    except httpx.HTTPError as exc:
        print(f"charter token: cannot reach {url}: {exc}", file=sys.stderr)
        return 2
    if resp.status_code != 200:
        print(f"charter token: {resp.status_code} {resp.text}", file=sys.stderr)
        return 1
    print(resp.json()["access_token"])
    return 0


def _user_token(args: argparse.Namespace) -> int:
    import getpass

    from charterctl.user_login import LoginError, user_token

    password = config.env("CHARTER_PASSWORD") or getpass.getpass(f"password for {args.user}: ")
    auth_url = (args.auth_url or config.service_url("auth")).rstrip("/")
    redirect = f"{config.service_url('gateway')}/ui/oauth2-redirect.html"
    try:
        body = user_token(auth_url, args.user, password, scope=args.scope or "",
                          redirect_uri=redirect)
    except (LoginError, httpx.HTTPError) as exc:
        print(f"charter token: {exc}", file=sys.stderr)
        return 1
    print(body["access_token"])
    return 0


def use_development_mode() -> None:
    """Development mode for this process and every process it starts (``--dev``)."""
    os.environ["CHARTER_ENV"] = "development"


def cmd_up(args: argparse.Namespace) -> int:
    """Check the configuration, then migrate, seed and run the platform in the foreground.

    Without ``--dev`` every component's production settings are checked first; any missing
    or bad variable stops here with all of them named (exit status 2).
    """
    from charterctl import registry, replicas, runner

    if args.dev:
        use_development_mode()
    components = registry.select(args.only)
    try:
        counts = replicas.parse(args.replicas, set(registry.COMPONENTS))
    except replicas.ReplicaError as exc:
        print(f"charter up: {exc}", file=sys.stderr)
        return 2
    problems = runner.check_config(components)
    if problems:
        print("charter up: refusing to start:\n" + "\n".join(problems), file=sys.stderr)
        if not config.is_development():
            print("(for a laptop run: charter up --dev, or make run)", file=sys.stderr)
        return 2
    return runner.up(components, seed=not args.no_seed, replica_counts=counts)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Migrate every component's database to the newest revision."""
    from charterctl import registry, runner

    runner.migrate(registry.select(args.only), seed=False)
    print("databases upgraded")
    return 0


def cmd_db_purge(args: argparse.Namespace) -> int:
    """Delete expired idempotency keys in every component's database that has them."""
    from charter.idempotency_store import purge_database
    from charterctl import registry

    for comp in registry.select(args.only):
        if not comp.has_database:
            continue
        deleted = purge_database(config.database_url(comp.name))
        if deleted is not None:
            print(f"{comp.name}: {deleted} expired idempotency keys deleted")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    """Load demo data (idempotent)."""
    from charterctl import registry, runner

    for line in runner.migrate(registry.select(args.only), seed=True):
        print(line)
    return 0


def cmd_keys_rotate(_args: argparse.Namespace) -> int:
    """Create a new signing key; the old one stays in JWKS until its tokens expire."""
    from auth.keys import rotate
    from charter.db import Database

    db = Database(config.database_url("auth"))
    try:
        print(f"new signing key: {rotate(db)}")
    finally:
        db.dispose()
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    """Disable or re-enable a user account in auth's database. Disabling revokes every
    token the user holds (refused everywhere within seconds, through the revocation
    feed); tokens issued before it stay refused after re-enabling."""
    from auth import accounts
    from auth.settings import AuthConfig
    from charter.db import Database

    try:
        cfg = AuthConfig.parse()
        db = Database(config.database_url("auth"))
    except config.ConfigError as exc:
        print(f"charter users: {exc}", file=sys.stderr)
        return 2
    try:
        with db.session() as session:
            known = accounts.find_by_email(session, args.email)
            was_disabled = known is not None and known.is_disabled
            if args.users_cmd == "disable":
                user = accounts.disable_user(
                    session, args.email,
                    token_lifetime=cfg.auth_access_token_ttl + cfg.auth_leeway)
                done = ("already disabled" if was_disabled
                        else "disabled; every token it held is revoked")
            else:
                user = accounts.enable_user(session, args.email)
                done = ("enabled; tokens issued before it was disabled stay refused"
                        if was_disabled else "already enabled")
            email, user_id = user.email, user.id
    except accounts.UnknownAccount:
        print(f"charter users: no account with the email address {args.email!r}",
              file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(f"user {email} ({user_id}): {done}")
    return 0


def cmd_pki_init(args: argparse.Namespace) -> int:
    """Create (or repair) the development CA and one certificate per service."""
    from pathlib import Path

    from charterctl import pki

    directory = Path(args.dir) if args.dir else None
    pki.init_pki(directory, force=args.force)
    for line in pki.describe_pki(directory):
        print(line)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Walk the user journey through the gateway of a running platform."""
    from charterctl import demo

    return demo.main(args.rest)


def cmd_messaging_declare(_args: argparse.Namespace) -> int:
    from charterctl import runner

    line = runner.declare_topology()
    print(line)
    return 0 if "declared on" in line else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``charter`` command."""
    parser = argparse.ArgumentParser(prog="charter", description=__doc__)
    parser.add_argument("--dev", action="store_true", dest="dev_all",
                        help="development mode for any command (CHARTER_ENV=development)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="migrate, seed and run the platform (Ctrl-C stops)")
    p.add_argument("--dev", action="store_true",
                   help="development mode (CHARTER_ENV=development): SQLite, a development "
                   "CA, random development secrets and demo users")
    p.add_argument("--only", help="comma-separated components, e.g. auth,catalog")
    p.add_argument("--no-seed", action="store_true", help="do not load demo data")
    p.add_argument("--replicas", metavar="SERVICE=N,…",
                   help="run N instances of these services, e.g. catalog=2,exchange=2 "
                   "(docs/operations.md, Replicas and failover)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("token", help="print a client-credentials access token")
    p.add_argument("--client", default="demo-cli")
    p.add_argument("--secret", help="client secret (default: <CLIENT>_SECRET env, or in "
                   "development mode the generated one)")
    p.add_argument("--scope", help="space-separated scopes (default: all the client may have)")
    p.add_argument("--auth-url", help="authorization server base URL")
    p.add_argument("--user", metavar="EMAIL",
                   help="a user token (code + PKCE); password from CHARTER_PASSWORD or a prompt")
    p.set_defaults(func=cmd_token)

    db = sub.add_parser("db", help="database commands").add_subparsers(dest="db_cmd",
                                                                       required=True)
    p = db.add_parser("upgrade", help="run every migration")
    p.add_argument("--only")
    p.set_defaults(func=cmd_db_upgrade)
    p = db.add_parser("purge", help="delete expired idempotency keys (see IDEMPOTENCY_*)")
    p.add_argument("--only")
    p.set_defaults(func=cmd_db_purge)
    from charterctl import replica  # charter db replica (catalog's standby)
    replica.register(db)

    p = sub.add_parser("seed", help="load demo data (idempotent)")
    p.add_argument("--only")
    p.set_defaults(func=cmd_seed)

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_cmd",
                                                                       required=True)
    p = keys.add_parser("rotate", help="rotate the token-signing key")
    p.set_defaults(func=cmd_keys_rotate)

    users = sub.add_parser("users", help="user accounts").add_subparsers(dest="users_cmd",
                                                                         required=True)
    p = users.add_parser("disable", help="disable an account and revoke all its tokens")
    p.add_argument("email")
    p.set_defaults(func=cmd_users)
    p = users.add_parser("enable", help="re-enable a disabled account")
    p.add_argument("email")
    p.set_defaults(func=cmd_users)

    p = sub.add_parser("demo", help="the scripted tour against a running platform",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_demo)

    pki_cmd = sub.add_parser("pki", help="development certificates for mutual TLS")
    pki_sub = pki_cmd.add_subparsers(dest="pki_cmd", required=True)
    p = pki_sub.add_parser("init", help="create the CA and one certificate per service")
    p.add_argument("--dir", help="where to write them (default var/pki or CHARTER_PKI_DIR)")
    p.add_argument("--force", action="store_true", help="regenerate everything")
    p.set_defaults(func=cmd_pki_init)

    gov.register(sub)
    container.register(sub)
    projections.register(sub)
    backup.register(sub)  # backup and restore
    logs.register(sub)
    dlq.register(sub, known_queues=registry.consumer_queues)
    messaging = sub.add_parser("messaging", help="the event topology").add_subparsers(
        dest="messaging_cmd", required=True)
    p = messaging.add_parser("declare", help="declare every consumer's queue, bindings, "
                             "delay queues and DLQ (charter up does it; deployments run it "
                             "before the services)")
    p.set_defaults(func=cmd_messaging_declare)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``charter`` console script."""
    args = build_parser().parse_args(argv)
    if args.dev_all:
        use_development_mode()
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

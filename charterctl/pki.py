"""The development PKI: a private CA and one certificate per platform identity.

``charter pki init`` (:func:`init_pki`) writes, into ``CHARTER_PKI_DIR`` (default
``var/pki/``, git-ignored):

- ``ca.pem`` / ``ca-key.pem`` — the development CA (ECDSA P-256, 10 years);
- ``<identity>.pem`` / ``<identity>-key.pem`` for every identity in :data:`IDENTITIES`
  (every service in :data:`charter.config.PORTS` plus ``charter-cli``, the identity of
  the CLI, ``make demo`` and tests calling services directly, and ``prometheus``, the
  metrics scraper's): CN = identity,
  SAN = DNS:<identity>, DNS:localhost, IP:127.0.0.1, extended key usage serverAuth +
  clientAuth (a service is both a server and a client), valid 825 days.

Private keys are written with mode 0600, every file atomically (temp file + rename), under
an exclusive lock so concurrent starts cannot interleave. It is idempotent: a CA or leaf
certificate that is still valid (key matches, issued by the current CA, the expected
names, more than :data:`RENEW_BEFORE` left) is kept; anything else is regenerated (a new
CA regenerates every leaf). ``force=True`` regenerates everything.

In production the same file layout is supplied from outside (a Kubernetes Secret mounted
at ``CHARTER_PKI_DIR``; see ``docs/mtls.md``) and the CA key never leaves the issuer:
:func:`ensure_pki` only checks that the files a process needs are present.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from charter import config
from charter.security.credentials import (
    CA_CERT,
    CA_KEY,
    CLI_IDENTITY,
    common_name,
    credentials,
    pki_dir,
)

log = logging.getLogger(__name__)

#: The metrics scraper's identity: Prometheus reads every ``/metrics`` over mTLS with it
#: (``deploy/prometheus/prometheus.yml``); no service grants it any API operation.
SCRAPER_IDENTITY = "prometheus"
IDENTITIES: tuple[str, ...] = (*config.PORTS, CLI_IDENTITY, SCRAPER_IDENTITY)
CA_NAME = "Charter Development CA"
ORGANIZATION = "Charter"
CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)
LOCAL_DNS = ("localhost",)
LOCAL_IPS = ("127.0.0.1",)

PrivateKey = ec.EllipticCurvePrivateKey


def init_pki(
    directory: Path | None = None,
    force: bool = False,
    identities: Iterable[str] | None = None,
) -> Path:
    """Create (or complete, or with ``force`` regenerate) the development PKI.

    Returns the directory. Safe to call on every start: valid files are kept.
    """
    base = pki_dir(directory)
    base.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        base.chmod(0o700)
    names = tuple(dict.fromkeys(identities if identities is not None else IDENTITIES))
    with _locked(base):
        ca_cert, ca_key, new_ca = _ensure_ca(base, force)
        for name in names:
            _ensure_leaf(base, name, ca_cert, ca_key, force=force or new_ca)
    return base


def ensure_pki(identities: Iterable[str] | None = None, directory: Path | None = None) -> Path:
    """What ``charter up`` calls before starting services with mTLS.

    Nothing when ``CHARTER_MTLS=0``. Embedded mode: :func:`init_pki` (creates what is
    missing, keeps what is valid). Production (``CHARTER_ENV=production``): never
    generates anything; raises :class:`charter.config.ConfigError` when a needed file is
    missing.
    """
    names = tuple(identities if identities is not None else IDENTITIES)
    if not config.mtls_enabled():
        return pki_dir(directory)
    if config.is_embedded():
        return init_pki(directory, identities=names)
    base = pki_dir(directory)
    missing = [str(p) for name in names for p in credentials(name, base).missing()]
    if missing:
        raise config.ConfigError(
            "mutual TLS is on (CHARTER_MTLS) but these files are missing: "
            + ", ".join(dict.fromkeys(missing))
        )
    return base


def describe_pki(directory: Path | None = None) -> list[str]:
    """One human-readable line per certificate in the directory (for the CLI)."""
    base = pki_dir(directory)
    lines: list[str] = []
    for path in sorted(base.glob("*.pem")):
        if path.name.endswith("-key.pem"):
            continue
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except ValueError:
            lines.append(f"{path.name}: not a certificate")
            continue
        lines.append(f"{path.name}: {cert.subject.rfc4514_string()}, "
                     f"expires {cert.not_valid_after_utc:%Y-%m-%d}")
    return lines


# -- internals ----------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(base: Path) -> Iterator[None]:
    with open(base / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with ``mode`` (readers never see a half-written file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _write_key(path: Path, key: PrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _write(path, pem, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _load(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, PrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if key.public_key() != cert.public_key():
        return None
    return cert, key


def _fresh(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > RENEW_BEFORE


def _ensure_ca(base: Path, force: bool) -> tuple[x509.Certificate, PrivateKey, bool]:
    cert_path, key_path = base / CA_CERT, base / CA_KEY
    loaded = None if force else _load(cert_path, key_path)
    if loaded is not None and _ca_ok(loaded[0]):
        _fix_mode(key_path)
        return loaded[0], loaded[1], False
    key = _new_key()
    cert = _issue_ca(key)
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    log.info("created development CA in %s", base)
    return cert, key, True


def _ca_ok(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca and _fresh(cert)


def _ensure_leaf(base: Path, name: str, ca_cert: x509.Certificate, ca_key: PrivateKey, *,
                 force: bool) -> None:
    files = credentials(name, base)
    loaded = None if force else _load(files.cert, files.key)
    if loaded is not None and _leaf_ok(loaded[0], name, ca_cert):
        _fix_mode(files.key)
        return
    key = _new_key()
    cert = issue_certificate(name, key, ca_cert, ca_key)
    _write_key(files.key, key)
    _write_cert(files.cert, cert)
    log.info("issued certificate for %s", name)


def _fix_mode(key_path: Path) -> None:
    if key_path.stat().st_mode & 0o077:
        key_path.chmod(0o600)


def expected_names(identity: str) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses every certificate of ``identity`` carries."""
    return list(dict.fromkeys((identity, *LOCAL_DNS))), list(LOCAL_IPS)


def _leaf_ok(cert: x509.Certificate, name: str, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    dns, ips = expected_names(name)
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return (
        common_name(cert) == name
        and set(dns) <= have_dns
        and set(ips) <= have_ips
        and ExtendedKeyUsageOID.CLIENT_AUTH in eku
        and ExtendedKeyUsageOID.SERVER_AUTH in eku
        and _fresh(cert)
    )


def _issue_ca(key: PrivateKey) -> x509.Certificate:
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
    ])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, hashes.SHA256())
    )


def issue_certificate(
    identity: str,
    key: PrivateKey,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    *,
    days: int = LEAF_DAYS,
) -> x509.Certificate:
    """A leaf certificate for ``identity`` signed by the CA (CN and SANs as documented)."""
    dns, ips = expected_names(identity)
    now = _now()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, identity),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(d) for d in dns]
                + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

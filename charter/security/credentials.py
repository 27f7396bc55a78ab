"""Where a process finds its mutual-TLS credentials, and who a certificate names.

The runtime side of the PKI: paths of the CA bundle and one identity's certificate and key
(``CHARTER_PKI_DIR``, default ``var/pki``), and the identity (common name) a peer
certificate carries. Issuing certificates is tooling (:mod:`charterctl.pki`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from charter import config

CLI_IDENTITY = "charter-cli"
CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"


@dataclass(frozen=True)
class Credentials:
    """The files one identity needs: the CA bundle, its certificate and its private key."""

    ca: Path
    cert: Path
    key: Path

    def missing(self) -> list[Path]:
        """The files that do not exist."""
        return [p for p in (self.ca, self.cert, self.key) if not p.is_file()]


def pki_dir(directory: Path | None = None) -> Path:
    """``directory`` or the configured PKI directory (``CHARTER_PKI_DIR``, ``var/pki``)."""
    return Path(directory) if directory is not None else config.pki_dir()


def credentials(identity: str, directory: Path | None = None) -> Credentials:
    """Paths of ``ca.pem``, ``<identity>.pem`` and ``<identity>-key.pem``."""
    base = pki_dir(directory)
    return Credentials(ca=base / CA_CERT, cert=base / f"{identity}.pem",
                       key=base / f"{identity}-key.pem")


def common_name(cert: x509.Certificate) -> str | None:
    """The subject's (first) common name."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value.decode() if isinstance(value, bytes) else value

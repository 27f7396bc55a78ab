"""``charter pki init``: the development CA and one certificate per identity."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from charter import config
from charterctl import pki

EXPECTED = {"gateway", "auth", "catalog", "cart", "orders", "payments", "exchange", "loyalty",
            "notifications", "charter-cli", "prometheus"}


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.pem"))}


def test_identities_are_every_port_and_the_cli() -> None:
    assert set(pki.IDENTITIES) == EXPECTED == set(config.PORTS) | {"charter-cli", "prometheus"}


def test_init_creates_ca_and_one_certificate_per_identity(tmp_path: Path) -> None:
    directory = pki.init_pki(tmp_path / "pki")
    assert directory == tmp_path / "pki"
    names = {p.name for p in directory.glob("*.pem")}
    assert names == ({"ca.pem", "ca-key.pem"} | {f"{i}.pem" for i in EXPECTED}
                     | {f"{i}-key.pem" for i in EXPECTED})
    ca = load(directory / "ca.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for identity in EXPECTED:
        files = pki.credentials(identity, directory)
        cert = load(files.cert)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == identity
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(san.get_values_for_type(x509.DNSName)) == {identity, "localhost"}
        assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
        assert key.public_key() == cert.public_key()


def test_private_keys_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    directory = pki.init_pki(tmp_path)
    for key in directory.glob("*-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key.name
    assert stat.S_IMODE((directory / "ca.pem").stat().st_mode) == 0o644
    assert not list(directory.glob(".*.tmp"))  # no leftovers of the atomic writes


def test_init_is_idempotent_and_force_regenerates(tmp_path: Path) -> None:
    first = snapshot(pki.init_pki(tmp_path))
    assert snapshot(pki.init_pki(tmp_path)) == first
    forced = snapshot(pki.init_pki(tmp_path, force=True))
    assert all(forced[name] != first[name] for name in first)


def test_init_repairs_what_is_missing_broken_or_loose(tmp_path: Path) -> None:
    first = snapshot(pki.init_pki(tmp_path))
    (tmp_path / "orders.pem").unlink()
    (tmp_path / "cart.pem").write_text("not a certificate")
    (tmp_path / "payments-key.pem").chmod(0o644)
    second = snapshot(pki.init_pki(tmp_path))
    assert second["orders.pem"] != first["orders.pem"]
    assert second["cart.pem"] != first["cart.pem"] and b"BEGIN CERTIFICATE" in second["cart.pem"]
    assert second["catalog.pem"] == first["catalog.pem"]
    assert stat.S_IMODE((tmp_path / "payments-key.pem").stat().st_mode) == 0o600


def test_a_new_ca_reissues_every_certificate(tmp_path: Path) -> None:
    first = snapshot(pki.init_pki(tmp_path))
    (tmp_path / "ca-key.pem").unlink()
    second = snapshot(pki.init_pki(tmp_path))
    ca = load(tmp_path / "ca.pem")
    assert second["ca.pem"] != first["ca.pem"]
    for identity in EXPECTED:
        load(tmp_path / f"{identity}.pem").verify_directly_issued_by(ca)


def test_certificate_of_another_ca_is_replaced(tmp_path: Path) -> None:
    ours, theirs = pki.init_pki(tmp_path / "ours"), pki.init_pki(tmp_path / "theirs")
    for suffix in (".pem", "-key.pem"):
        (ours / f"orders{suffix}").write_bytes((theirs / f"orders{suffix}").read_bytes())
    pki.init_pki(ours)
    load(ours / "orders.pem").verify_directly_issued_by(load(ours / "ca.pem"))


def test_default_directory_follows_the_environment(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHARTER_PKI_DIR", raising=False)
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path / "var"))
    assert pki.init_pki() == tmp_path / "var" / "pki"
    monkeypatch.setenv("CHARTER_PKI_DIR", str(tmp_path / "elsewhere"))
    assert pki.init_pki(identities=["orders"]) == tmp_path / "elsewhere"
    assert (tmp_path / "elsewhere" / "orders.pem").is_file()
    assert not (tmp_path / "elsewhere" / "cart.pem").exists()


def test_ensure_pki_generates_only_in_embedded_mode(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "production")
    with pytest.raises(config.ConfigError, match="catalog-key.pem"):
        pki.ensure_pki(["catalog"], tmp_path)
    assert not list(tmp_path.glob("*.pem"))
    monkeypatch.setenv("CHARTER_ENV", "embedded")
    pki.ensure_pki(["catalog"], tmp_path)
    monkeypatch.setenv("CHARTER_ENV", "production")
    assert pki.ensure_pki(["catalog"], tmp_path) == tmp_path


def test_ensure_pki_does_nothing_without_mtls(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_MTLS", "0")
    assert pki.ensure_pki(directory=tmp_path / "pki") == tmp_path / "pki"
    assert not (tmp_path / "pki").exists()


def test_describe_lists_every_certificate(pki_dir: Path) -> None:
    lines = pki.describe_pki(pki_dir)
    assert len(lines) == len(EXPECTED) + 1
    assert any(line.startswith("orders.pem: CN=orders") for line in lines)

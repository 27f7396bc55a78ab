"""``charter db replica``: failures are one line on stderr and exit status 1 (no server
needed); the real standby is tested in tests/catalog/test_replica_pg.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from charterctl import cli, replica
from tests.support.servers import free_port


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(["db", "replica", *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", ["setup", "status", "teardown"])
def test_an_unreachable_primary_is_one_line_and_exit_1(
        capsys: pytest.CaptureFixture[str], command: str, tmp_path: Path) -> None:
    primary = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    code, err = run(capsys, command, "--primary", primary, "--data-dir", f"{tmp_path}/standby")
    assert code == 1
    assert err.startswith(f"charter db replica {command}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_a_missing_replication_rule_names_the_line_to_add(
        monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = 'no pg_hba.conf entry for replication connection from host "127.0.0.1"'
    monkeypatch.setattr(replica, "replication_refusal", lambda spec: refusal)
    with pytest.raises(replica.ReplicaError) as err:
        replica.require_replication(replica.Standby())
    assert replica.HBA_LINE in str(err.value) and "--allow-local-replication" in str(err.value)


def test_a_remote_primary_is_never_edited() -> None:
    spec = replica.Standby(primary="postgresql://postgres@db.example.internal:5432/postgres")
    with pytest.raises(replica.ReplicaError, match="not on this machine"):
        replica.allow_local_replication(spec)


@pytest.mark.parametrize("slot", ["Bad-Name", "x;drop", ""])
def test_a_bad_slot_name_is_refused(slot: str) -> None:
    with pytest.raises(replica.ReplicaError, match="slot name"):
        replica.Standby(slot=slot)

"""``charter gov publish``: self-contained baselines, refusal of breaking changes, the log."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from charterctl.cli import main
from governance.diff import publish

FIXTURES = Path(__file__).parent / "fixtures" / "diff"


@pytest.fixture()
def openapi_dir(tmp_path: Path) -> Path:
    """``openapi/items/v1.yaml`` sharing ``openapi/common/items.yaml``, like the real specs."""
    root = tmp_path / "openapi"
    (root / "items").mkdir(parents=True)
    (root / "common").mkdir()
    text = (FIXTURES / "v1.yaml").read_text(encoding="utf-8")
    (root / "items" / "v1.yaml").write_text(
        text.replace("'common.yaml#", "'../common/items.yaml#"), encoding="utf-8")
    shutil.copy(FIXTURES / "common.yaml", root / "common" / "items.yaml")
    return root


def _publish(openapi_dir: Path, *args: str) -> int:
    return main(["gov", "publish", "--openapi-dir", str(openapi_dir), *args])


def _drop_currency(openapi_dir: Path) -> None:
    common = openapi_dir / "common" / "items.yaml"
    doc = yaml.safe_load(common.read_text(encoding="utf-8"))
    del doc["components"]["schemas"]["Money"]["properties"]["currency"]
    common.write_text(yaml.safe_dump(doc), encoding="utf-8")


def test_first_publication_writes_a_self_contained_baseline(
        openapi_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _publish(openapi_dir) == 0
    assert "items/v1: published" in capsys.readouterr().out
    baseline = openapi_dir / ".published" / "items" / "v1.yaml"
    text = baseline.read_text(encoding="utf-8")
    assert "common/items.yaml" not in text  # shared parts copied in …
    assert "$ref: '#/components/schemas/Item'" in text  # … the spec's own refs kept
    doc = yaml.safe_load(text)
    schemas = doc["components"]["schemas"]
    assert schemas["Item"]["properties"]["price"] == {"$ref": "#/components/schemas/Money"}
    assert schemas["Money"]["properties"]["currency"]["pattern"] == "^[A-Z]{3}$"
    assert doc["components"]["responses"]["NotFound"]["content"]["application/problem+json"][
        "schema"] == {"$ref": "#/components/schemas/Problem"}
    log = (openapi_dir / ".published" / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "items/v1 1.0.0" in log and "first baseline" in log


def test_a_copied_component_never_replaces_one_of_the_spec(openapi_dir: Path) -> None:
    spec = openapi_dir / "items" / "v1.yaml"
    doc = yaml.safe_load(spec.read_text(encoding="utf-8"))
    doc["components"]["schemas"]["Money"] = {"type": "integer"}
    spec.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    assert _publish(openapi_dir) == 0
    baseline = yaml.safe_load((openapi_dir / ".published" / "items" / "v1.yaml").read_text(
        encoding="utf-8"))
    schemas = baseline["components"]["schemas"]
    assert schemas["Money"] == {"type": "integer"}
    assert schemas["Money_items"]["required"] == ["amount", "currency"]
    assert schemas["Item"]["properties"]["price"] == {"$ref": "#/components/schemas/Money_items"}


def test_republishing_an_unchanged_spec_changes_nothing(
        openapi_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _publish(openapi_dir) == 0
    log = openapi_dir / ".published" / "CHANGELOG.md"
    before = log.read_text(encoding="utf-8")
    assert _publish(openapi_dir, "items/v1") == 0
    assert "items/v1: unchanged" in capsys.readouterr().out
    assert log.read_text(encoding="utf-8") == before


def test_a_later_publication_is_not_logged_as_the_first(openapi_dir: Path) -> None:
    """Regression: a description-only republication was logged as "first baseline"."""
    assert _publish(openapi_dir) == 0
    spec = openapi_dir / "items" / "v1.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace(
        "version: 1.0.0}", "version: 1.0.1, description: Now described.}"),
        encoding="utf-8")
    assert _publish(openapi_dir, "items/v1") == 0
    log = (openapi_dir / ".published" / "CHANGELOG.md").read_text(encoding="utf-8")
    assert log.count("first baseline") == 1
    assert "items/v1 1.0.1\n- 0 breaking, 0 maybe breaking, 0 safe change(s)" in log


def test_a_change_to_a_common_file_breaks_the_baseline(openapi_dir: Path) -> None:
    assert _publish(openapi_dir) == 0
    _drop_currency(openapi_dir)
    [ref] = publish.specs(openapi_dir)
    rules = {(f.rule, f.location) for f in publish.check(ref)}
    assert ("response-property-removed",
            "GET /items/{item_id} response 200 application/json: price.currency") in rules


def test_a_breaking_spec_is_refused(openapi_dir: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert _publish(openapi_dir) == 0
    baseline = openapi_dir / ".published" / "items" / "v1.yaml"
    before = baseline.read_text(encoding="utf-8")
    _drop_currency(openapi_dir)
    assert _publish(openapi_dir) == 1
    out = capsys.readouterr().out
    assert "items/v1: refused" in out and "response-property-removed" in out
    assert "--allow-breaking" in out
    assert baseline.read_text(encoding="utf-8") == before


def test_allow_breaking_publishes_and_records_the_reason(
        openapi_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _publish(openapi_dir) == 0
    _drop_currency(openapi_dir)
    assert _publish(openapi_dir, "--allow-breaking", "no client reads the currency yet") == 0
    [ref] = publish.specs(openapi_dir)
    assert publish.check(ref) == []
    log = (openapi_dir / ".published" / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "**breaking, allowed:** no client reads the currency yet" in log
    assert "`response-property-removed`" in log


def test_allow_breaking_needs_a_reason(openapi_dir: Path) -> None:
    assert _publish(openapi_dir, "--allow-breaking", " ") == 2
    assert not (openapi_dir / ".published").exists()


def test_unknown_spec_is_an_error(openapi_dir: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert _publish(openapi_dir, "nosuch/v1") == 2
    assert "no such spec: nosuch/v1" in capsys.readouterr().err

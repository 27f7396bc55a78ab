"""The Backstage catalog: no drift, Backstage's own validators accept every entity, every
reference resolves, and it says what the specs and governance files say."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from charter import config, dependencies
from governance.catalog import generate
from tests.support.databases import skip_or_fail

ROOT = config.ROOT
VALIDATOR = ROOT / "governance" / "catalog" / "validate.mjs"
REF_FIELDS = ("owner", "system", "domain", "providesApis", "consumesApis", "dependsOn",
              "dependencyOf")
# the default kind of a reference without one, per field (Backstage's rules)
DEFAULT_KIND = {"owner": "group", "system": "system", "domain": "domain",
                "providesApis": "api", "consumesApis": "api"}


def committed() -> list[tuple[str, dict[str, Any]]]:
    """(file, entity) for every entity on disk, the root Location first."""
    files = [ROOT / "catalog-info.yaml", *sorted((ROOT / "catalog").glob("*.yaml"))]
    return [(str(f.relative_to(ROOT)), doc) for f in files
            for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")) if doc]


@pytest.fixture(scope="module")
def entities() -> list[tuple[str, dict[str, Any]]]:
    return committed()


def by_ref(entities: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {f"{e['kind'].lower()}:{e['metadata']['name']}": e for _, e in entities}


def test_catalog_matches_the_generator():
    stale = generate.drift()
    assert not stale, (f"the Backstage catalog differs from the specs and governance files "
                       f"({', '.join(stale)}): run `charter gov catalog`")


def test_generation_is_deterministic():
    assert generate.render() == generate.render()


def validate(items: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "@backstage" / "catalog-model").is_dir():
        skip_or_fail("node or @backstage/catalog-model missing (`make node`)")
    done = subprocess.run([node, str(VALIDATOR)], input=json.dumps(items), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_backstage_validators_accept_every_entity(entities):
    code, result = validate([{"file": f, "entity": e} for f, e in entities])
    assert result["errors"] == [] and code == 0
    assert result["checked"] == len(entities)


def test_backstage_validators_reject_broken_entities(entities):
    api = next(e for _, e in entities if e["kind"] == "API")
    no_owner = json.loads(json.dumps(api))
    del no_owner["spec"]["owner"]
    missing_spec = json.loads(json.dumps(api))
    missing_spec["metadata"]["name"] = "missing-spec"
    missing_spec["spec"]["definition"] = {"$text": "../openapi/nope/v9.yaml"}
    bad_name = {"apiVersion": generate.API_VERSION, "kind": "Group",
                "metadata": {"name": "Team Cart"}, "spec": {"type": "team", "children": []}}
    code, result = validate([{"file": "catalog/apis.yaml", "entity": no_owner},
                             {"file": "catalog/apis.yaml", "entity": missing_spec},
                             {"file": "catalog/groups.yaml", "entity": bad_name}])
    assert code == 1
    errors = "\n".join(result["errors"])
    assert len(result["errors"]) == 3, errors
    assert "owner" in errors and "no such file" in errors and "metadata.name" in errors


def test_every_reference_resolves(entities):
    known = by_ref(entities)
    dangling = []
    for file, entity in entities:
        spec = entity.get("spec") or {}
        for field in REF_FIELDS:
            value = spec.get(field)
            refs = value if isinstance(value, list) else [value] if value else []
            for ref in refs:
                kind, _, name = ref.rpartition(":")
                kind = kind or DEFAULT_KIND.get(field, "component")
                if f"{kind.lower()}:{name.split('/')[-1]}" not in known:
                    dangling.append(f"{file} {entity['metadata']['name']}.{field}: {ref}")
    assert not dangling, dangling
    root = known["location:charter"]
    targets = root["spec"]["targets"]
    assert targets and all((ROOT / t).is_file() for t in targets)
    assert {f"./{f}" for f, _ in entities if f != "catalog-info.yaml"} == set(targets)


def test_the_catalog_says_what_the_sources_say(entities):
    known = by_ref(entities)
    specs = sorted(Path(config.OPENAPI_DIR).glob("*/v*.yaml"))
    for spec in specs:
        api = known[f"api:{spec.parent.name}-{spec.stem}"]
        assert api["spec"]["type"] == "openapi"
        assert api["spec"]["definition"] == {"$text": f"../openapi/{spec.parent.name}/"
                                                      f"{spec.stem}.yaml"}
        owner = (yaml.safe_load(spec.read_text(encoding="utf-8"))["info"].get("x-owner")
                 or f"team-{spec.parent.name}")
        assert api["spec"]["owner"] == f"group:{owner}"
    assert known["api:orders-v1"]["spec"]["lifecycle"] == "deprecated"
    assert known["api:orders-v1"]["metadata"]["annotations"]["charter/successor"] == "orders-v2"
    assert known["api:orders-v2"]["spec"]["lifecycle"] != "deprecated"
    assert {r.split(":")[1] for r in known if r.startswith("component:")} == set(config.PORTS)
    manifest = dependencies.load()
    for name, deps in manifest.services.items():
        component = known[f"component:{name}"]["spec"]
        for call in (*deps.calls, *deps.on_behalf_of_user):
            assert f"api:{call.api}-{call.version}" in component["consumesApis"]
            assert f"component:{call.api}" in component["dependsOn"]
    assert "api:orders-v2" in known["component:orders"]["spec"]["providesApis"]
    assert "resource:redis" in known["component:catalog"]["spec"]["dependsOn"]
    assert "resource:orders-database" in known["component:orders"]["spec"]["dependsOn"]
    for _, entity in entities:
        if entity["kind"] in ("Component", "API", "System"):
            annotations = entity["metadata"]["annotations"]
            assert annotations[generate.SOURCE].startswith("url:https://")
            assert annotations[generate.TECHDOCS] == "dir:.."

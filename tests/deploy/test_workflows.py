"""Every GitHub workflow validates against the GitHub workflow schema (check-jsonschema's
vendored copy: no network), and the CD pipeline has the stages the release process needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from charter import config

WORKFLOWS = sorted((config.ROOT / ".github" / "workflows").glob("*.y*ml"))
CHECK = Path(sys.executable).parent / "check-jsonschema"


def check(*files: Path) -> subprocess.CompletedProcess[str]:
    """``check-jsonschema --builtin-schema vendor.github-workflows FILES``."""
    if not CHECK.exists():
        pytest.fail("check-jsonschema missing from the venv (`make install`)")
    return subprocess.run([str(CHECK), "--builtin-schema", "vendor.github-workflows",
                           *map(str, files)], capture_output=True, text=True, timeout=120)


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "cd.yml"}


def test_every_workflow_matches_the_schema():
    done = check(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = yaml.safe_load((config.ROOT / ".github" / "workflows" / "cd.yml").read_text())
    broken["jobs"]["build"]["runs-on"] = {"not": "a runner"}
    broken["jobs"]["build"]["stepz"] = broken["jobs"]["build"].pop("steps")
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert check(path).returncode == 1


def test_cd_pipeline_stages():
    cd = yaml.safe_load((config.ROOT / ".github" / "workflows" / "cd.yml").read_text())
    jobs = cd["jobs"]
    assert list(jobs) == ["build", "deploy-staging", "smoke-staging", "production", "notify"]
    push = next(s for s in jobs["build"]["steps"] if s.get("id") == "push")
    assert push["uses"].startswith("docker/build-push-action@")
    assert push["with"]["sbom"] is True and push["with"]["push"] is True
    assert jobs["deploy-staging"]["needs"] == "build"
    staging = "\n".join(s.get("run", "") for s in jobs["deploy-staging"]["steps"])
    assert "deploy/k8s/overlays/staging" in staging
    assert jobs["smoke-staging"]["needs"] == "deploy-staging"
    prod = jobs["production"]
    assert prod["environment"]["name"] == "production"   # required reviewers = approval
    assert "smoke-staging" in prod["needs"]
    prod_run = "\n".join(s.get("run", "") for s in prod["steps"])
    assert "deploy/k8s/overlays/prod" in prod_run
    assert "kubectl argo rollouts -n charter status gateway" in prod_run
    notify = jobs["notify"]
    assert notify["if"] == "always()" and "SLACK_WEBHOOK_URL" in notify["env"]
    # secrets reach scripts through env, never pasted into the script text
    for job in jobs.values():
        for step in job.get("steps", []):
            assert "secrets." not in step.get("run", ""), step

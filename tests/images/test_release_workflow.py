"""The release workflow: linted by scripts/actionlint.py (actionlint where it installs, the
github-workflow schema where it does not), and what the workflow must do, read from the file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def test_release_workflow_sets_the_registry_once_and_builds_tests_pushes_records() -> None:
    text = WORKFLOW.read_text()
    flow = yaml.safe_load(text)
    assert flow["env"]["REGISTRY"] == "ghcr.io/${{ github.repository_owner }}"
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert len(re.findall(r"ghcr\.io", code)) == 2  # the REGISTRY default and docker/login-action's host
    assert text.count("CHIML_IMAGE_REGISTRY: ${{ env.REGISTRY }}") == 2  # test and publish build the same names
    test, publish = flow["jobs"]["test"], flow["jobs"]["publish"]
    assert publish["needs"] == "test" and publish["permissions"]["packages"] == "write"
    runs = "\n".join(step.get("run", "") for job in (test, publish) for step in job["steps"])
    assert "make images-test" in runs and "scripts/release_images.py" in runs and "--digests" in runs
    assert "skopeo inspect" in runs  # the base is pinned by digest at release time
    for script in re.findall(r"scripts/[\w.]+", runs):
        assert (REPO / script).exists(), script
    assert flow[True]["push"]["tags"] == ["v*"]  # YAML reads the key `on` as True


def _lint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "actionlint.py"), *map(str, files)],
                          capture_output=True, text=True, check=False, timeout=600)


def test_the_workflows_pass_the_lint() -> None:
    result = _lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "linting 1 workflow(s) with " in result.stderr


def test_the_lint_fails_a_broken_workflow(tmp_path: Path) -> None:
    """The linter in use (whichever installs here) rejects a job without runs-on."""
    flow = yaml.safe_load(WORKFLOW.read_text())
    del flow["jobs"]["test"]["runs-on"]
    broken = tmp_path / "release.yml"
    broken.write_text(yaml.safe_dump({"on" if k is True else k: v for k, v in flow.items()}))
    result = _lint(broken)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "runs-on" in result.stdout + result.stderr


def test_the_release_workflow_runs_actionlint_itself() -> None:
    """Where GitHub is reachable actionlint installs: the release workflow lints itself with it."""
    flow = yaml.safe_load(WORKFLOW.read_text())
    runs = [step.get("run", "") for step in flow["jobs"]["test"]["steps"]]
    assert any("make images-lint" in run for run in runs), runs


def test_every_action_is_pinned_by_commit() -> None:
    """A tag can be moved to other code; a commit cannot: every `uses:` names a full SHA, with
    the release it is in a comment for the reader (and for update bots)."""
    uses = re.findall(r"^\s*-?\s*uses:\s*(\S+)(.*)$", WORKFLOW.read_text(), flags=re.M)
    assert len(uses) >= 6
    for ref, comment in uses:
        action, _, version = ref.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", version), f"{action} is pinned to {version!r}, not a commit"
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", comment), f"{action}@{version}: name its release in a comment"

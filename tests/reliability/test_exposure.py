"""Exposure: generated secrets stay in owner-only files, never in logs, process lists or
`status --json`; the repository holds no secret that nobody has looked at."""

from __future__ import annotations

import importlib.util
import json
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import write_local_config
from tests.platform.test_local_e2e import chiml
from tests.reliability.conftest import remove_postgres_data

REPO = Path(__file__).resolve().parents[2]


def _baseline_module():
    spec = importlib.util.spec_from_file_location("secrets_baseline", REPO / "scripts" / "secrets_baseline.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repository_has_no_unaudited_secret():
    module = _baseline_module()
    audited = {
        (name, item["hashed_secret"])
        for name, items in json.loads(module.BASELINE.read_text())["results"].items()
        for item in items
        if item.get("is_secret") is False
    }
    found = [
        f"{name}:{item['line_number']} ({item['type']})"
        for name, items in module.scan()["results"].items()
        for item in items
        if (name, item["hashed_secret"]) not in audited
    ]
    assert found == [], "unaudited findings (see scripts/secrets_baseline.py): " + ", ".join(found)


def test_the_scanner_finds_a_planted_secret(tmp_path: Path):
    """The check above is only worth something if the scanner sees real secrets."""
    planted = tmp_path / "settings.py"
    # built at run time so that this file itself holds no secret-shaped string
    planted.write_text("db_password = '" + "h8Gf2kQ9" + "zL1xP0vBq7Tn" + "'\n")
    tool = Path(sys.executable).with_name("detect-secrets")
    out = subprocess.run(
        [str(tool), "scan", planted.name], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out)["results"], "detect-secrets found nothing in a file holding a secret"


def _private(path: Path) -> bool:
    return not stat.S_IMODE(path.stat().st_mode) & (stat.S_IRWXG | stat.S_IRWXO)


@pytest.mark.e2e
def test_local_secrets_never_leak(tmp_path: Path):
    write_local_config(tmp_path, database="postgresql")
    home = tmp_path / ".chiml"
    try:
        chiml("up", cwd=tmp_path)
        password = json.loads((home / "secrets" / "postgresql.json").read_text())["password"]
        assert len(password) >= 24

        # Owner-only: the secrets folder, every file in it, and every file that names the
        # password (supervisord's program files carry it in the service's environment).
        assert _private(home / "secrets")
        holders = []
        for path in home.rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    text = path.read_text(encoding="utf-8", errors="ignore")
                except OSError:
                    continue
                if password in text:
                    holders.append(path)
        assert home / "secrets" / "postgresql.json" in holders
        def shielded(path: Path) -> bool:  # the file, or a folder of CHIML_HOME above it, is owner-only
            return _private(path) or any(_private(d) for d in path.parents if d == home or home in d.parents)

        exposed = [str(p) for p in holders if not shielded(p)]
        assert exposed == [], f"readable by others: {exposed}"
        leaked_logs = [str(p) for p in holders if p.suffix == ".log" or "logs" in p.parts]
        assert leaked_logs == []

        # Never on a command line (visible to every user in `ps`).
        on_cmdline = []
        for proc in psutil.process_iter(["cmdline"]):
            if any(password in part for part in proc.info["cmdline"] or []):
                on_cmdline.append(proc.pid)
        assert on_cmdline == []

        status = chiml("status", "--json", cwd=tmp_path).stdout
        assert password not in status
        json.loads(status)
        # shown only when asked for
        shown = json.loads(chiml("status", "--json", "--show-secrets", cwd=tmp_path).stdout)
        assert shown["secrets"]["postgresql_password"] == password

        # every socket the platform listens on is on loopback (supervisord's own is a unix socket)
        from chiml.local.supervisor import Supervisor

        ident = Supervisor(home).ident
        listening = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if proc.environ().get("CHIML_SUPERVISOR") != ident:
                    continue
                listening += [(proc.name(), c.laddr.ip, c.laddr.port) for c in proc.connections(kind="inet")
                              if c.status == psutil.CONN_LISTEN]  # psutil 5.x spelling
            except (psutil.Error, OSError):
                continue
        # MLflow, optuna-dashboard, TensorBoard, PostgreSQL at least
        assert len({port for _, _, port in listening}) >= 4 and "postgres" in {n for n, _, _ in listening}, listening
        exposed = [entry for entry in listening if entry[1] not in ("127.0.0.1", "::1")]
        assert exposed == [], f"listening off loopback: {exposed}"
    finally:
        chiml("down", cwd=tmp_path, check=False)
        remove_postgres_data(home)


def test_every_checkov_skip_in_the_repository_is_justified():
    """checkov runs on terraform/, on the rendered charts and on the Dockerfiles: each check it is
    told to skip carries its reason where the skip is written."""
    import re

    skips = 0
    # helm/.checkov.yaml: every skipped check id has a comment right above it
    lines = (REPO / "helm" / ".checkov.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(r"\s*-\s*CKV2?_\w+", line):
            assert lines[i - 1].strip().startswith("#"), f"helm/.checkov.yaml: {line.strip()} has no reason"
            skips += 1
    # per-resource annotations and inline comments, anywhere in the tracked tree
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in tracked.splitlines():
        path = REPO / name
        if (path.suffix not in (".yaml", ".tpl", ".tf", "") and path.name != "Dockerfile") or not path.is_file():
            continue
        for line in path.read_text(errors="ignore").splitlines():
            annotation = re.search(r"checkov\.io/skip\d+:\s*\"?(CKV2?_\w+)=(.*)", line)
            inline = re.search(r"checkov:skip=(CKV2?_\w+):?(.*)", line)
            found = annotation or inline
            if found and not name.startswith("tests/"):
                assert len(found.group(2).strip(' "')) > 10, f"{name}: {found.group(1)} skipped without a reason"
                skips += 1
    assert skips >= 4  # the two global ones and the two annotated deployments

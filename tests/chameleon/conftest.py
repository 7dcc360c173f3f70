"""Fixtures of the Chameleon tests: fake Chameleon (at python-chi's boundary), a fake `terraform`
on PATH, fake nodes behind SSH, and a chameleon-profile chiml.yaml in a temp directory."""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chameleon.fakes import FakeChameleon, FakeNodes

HERE = Path(__file__).parent
APP_CRED_ENV = {
    "OS_AUTH_URL": "https://chi.uc.chameleoncloud.org:5000/v3",
    "OS_AUTH_TYPE": "v3applicationcredential",
    "OS_APPLICATION_CREDENTIAL_ID": "0123456789abcdef",
    "OS_APPLICATION_CREDENTIAL_SECRET": "s3cret",
    "OS_REGION_NAME": "CHI@UC",
    "OS_INTERFACE": "public",
    "OS_IDENTITY_API_VERSION": "3",
}


def _off_loopback(address: Any) -> bool:
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return False  # AF_UNIX paths and the like
    host = address[0]
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"  # a name would be resolved: only localhost stays here


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch):
    """No test of this folder may open a connection off loopback: such attempts are refused
    before any packet leaves, and the test fails even if the code under test swallowed the error."""
    attempts: list[Any] = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(original):
        def call(self, address):
            if _off_loopback(address):
                attempts.append(address)
                raise OSError(errno.ENETUNREACH, f"test guard: connection to {address} off loopback refused")
            return original(self, address)
        return call

    monkeypatch.setattr(socket.socket, "connect", guarded(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(connect_ex))
    yield attempts
    assert attempts == [], f"the test tried to connect off loopback: {attempts}"


@pytest.fixture
def fake_chameleon(monkeypatch: pytest.MonkeyPatch) -> FakeChameleon:
    fake = FakeChameleon()
    fake.install(monkeypatch)
    return fake


@dataclass
class FakeTerraform:
    bin_dir: Path
    control: Path

    def set(self, **control: Any) -> None:
        self.control.write_text(json.dumps(control))

    def calls(self) -> list[list[str]]:
        log = self.control.parent / "calls.jsonl"
        if not log.is_file():
            return []
        return [json.loads(line)["args"] for line in log.read_text().splitlines()]


@pytest.fixture
def fake_terraform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTerraform:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    script = bin_dir / "terraform"
    script.write_text(f"#!{sys.executable}\n" + (HERE / "fake_terraform.py").read_text())
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    control = tmp_path / "tf-control.json"
    control.write_text("{}")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TF_CONTROL", str(control))
    return FakeTerraform(bin_dir, control)


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    for key, value in APP_CRED_ENV.items():
        monkeypatch.setenv(key, value)
    return dict(APP_CRED_ENV)


@pytest.fixture
def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write a chameleon-profile chiml.yaml (with a real key file) and return its path."""
    monkeypatch.delenv("CHIML_HOME", raising=False)
    key = tmp_path / "id_chameleon"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o600)

    def write(**chameleon: Any) -> Path:
        section = {"key_name": "my-key", "ssh_private_key": str(key), "admin_cidr": "198.51.100.7/32",
                   "lease_timeout_s": 30, "k3s_timeout_s": 60, **chameleon}
        path = tmp_path / "project" / "chiml.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump({"profile": "chameleon", "chameleon": section}))
        return path

    return write


@pytest.fixture
def fake_nodes() -> FakeNodes:
    return FakeNodes()

"""Shared fixtures. `local_platform` brings up one real local platform for the whole session
on a temporary CHIML_HOME and free ports, so tests never disturb a platform the user runs."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_range(size: int = 20) -> str:
    """A LOW-HIGH range whose ports are all free right now."""
    import random

    for _ in range(200):
        low = random.randint(20000, 60000 - size)
        ok = True
        for port in range(low, low + size):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return f"{low}-{low + size - 1}"
    raise RuntimeError("no free port range")


# What the tests' platforms run unless a test asks for more: JupyterLab costs every `up` seconds
# of CPU on the 2-core CI machine and only its own tests (and the session platform) need it.
def _test_services() -> list[str]:
    from typing import get_args

    from chiml.config.local import UIService

    return [name for name in get_args(UIService) if name != "jupyterlab"]


TEST_SERVICES = _test_services()


def write_local_config(directory: Path, **local_overrides: object) -> Path:
    """A chiml.yaml for the local profile on free ports (``services`` defaults to TEST_SERVICES)."""
    ports = {
        "mlflow": free_port(),
        "optuna_dashboard": free_port(),
        "tensorboard": free_port(),
        "postgresql": free_port(),
        "jupyterlab": free_port(),
    }
    local = {"ports": ports, "endpoint_ports": free_port_range(), "services": TEST_SERVICES, **local_overrides}
    path = directory / "chiml.yaml"
    path.write_text(yaml.safe_dump({"profile": "local", "local": local}), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def local_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A running local platform (SQLite backend) shared by every e2e test of the session."""
    from chiml import Platform
    from chiml.config.local import LocalConfig

    directory = tmp_path_factory.mktemp("platform")
    config = write_local_config(directory, services=LocalConfig().services)  # every service, JupyterLab too
    saved = os.environ.pop("CHIML_HOME", None)
    platform = Platform.connect(config=config)
    try:
        platform.up()
        yield platform
    finally:
        platform.down()
        if saved is not None:
            os.environ["CHIML_HOME"] = saved

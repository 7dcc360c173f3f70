"""The JupyterLab service's files: token 0600, config owner-only, kernelspec, no secret in the program."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

from chiml.config import load_config
from chiml.local import jupyterlab
from chiml.local.services import build_services
from tests.conftest import write_local_config


def test_files_token_and_program(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("CHIML_HOME", raising=False)
    loaded = load_config(write_local_config(tmp_path, services=["mlflow", "jupyterlab"]))
    jupyterlab.write_files(loaded)
    token = jupyterlab.token(loaded.home)
    assert token == jupyterlab.token(loaded.home)  # generated once
    secret = loaded.home / "secrets" / jupyterlab.TOKEN_FILE
    config = jupyterlab.config_dir(loaded.home) / "jupyter_server_config.json"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    server = json.loads(config.read_text())
    assert server["IdentityProvider"]["token"] == token
    assert server["ServerApp"]["ip"] == "127.0.0.1"
    assert server["ServerApp"]["port"] == loaded.config.local.ports.jupyterlab
    assert Path(server["ServerApp"]["root_dir"]) == loaded.home / "data" / "notebooks"
    spec = json.loads((jupyterlab.data_dir(loaded.home) / "kernels" / "chiml" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable and spec["env"]["CHIML_HOME"] == str(loaded.home)

    services = {s.name: s for s in build_services(loaded)}
    if jupyterlab.installed():
        program = services["jupyterlab"].program
        assert token not in " ".join(program.command)
        assert token not in json.dumps(program.environment)
        assert program.environment["JUPYTER_CONFIG_DIR"] == str(jupyterlab.config_dir(loaded.home))
    else:
        assert "jupyterlab" not in services

"""JupyterLab on the local profile: a supervised ``jupyter lab`` on 127.0.0.1 with a generated token.

The token is generated once, kept in ``CHIML_HOME/secrets/jupyterlab-token`` (0600) and handed
to the server in an owner-only config file (``secrets/jupyter/jupyter_server_config.json``,
found through ``JUPYTER_CONFIG_DIR``): never on a command line, never in the environment that
supervisord's config file records. jupyter_server masks a configured token in the URL it logs;
its runtime files, which do hold it, go to ``secrets/jupyter/runtime``.

Notebooks live under ``CHIML_HOME/data/notebooks``; the kernels under ``data/jupyter/kernels``:
one per framework environment. Every framework group co-installs with the platform pins
(see :mod:`chiml.frameworks`), so the local profile has one environment and one kernel,
``chiml``, the platform's interpreter; ``Platform.connect()`` works in its first cell because
the kernel gets ``CHIML_HOME`` and the notebooks sit under the home beside ``chiml.yaml``.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from chiml.config import LoadedConfig
from chiml.local import kernelspec
from chiml.local.layout import HomeLayout

KERNEL_NAME = kernelspec.KERNEL_NAME
TOKEN_FILE = "jupyterlab-token"


def jupyter_bin() -> Path:
    return Path(sys.executable).with_name("jupyter-lab")


def installed() -> bool:
    """JupyterLab comes with the ``notebooks`` framework group (``make frameworks``)."""
    return jupyter_bin().exists()


def notebooks_dir(home: Path) -> Path:
    return HomeLayout(home).data / "notebooks"


def data_dir(home: Path) -> Path:
    """``JUPYTER_DATA_DIR``: where the kernelspecs live."""
    return HomeLayout(home).data / "jupyter"


def config_dir(home: Path) -> Path:
    """``JUPYTER_CONFIG_DIR``: owner-only, it holds the token."""
    return HomeLayout(home).secrets / "jupyter"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def token(home: Path) -> str:
    """The server's token, generated on first use."""
    path = HomeLayout(home).secrets / TOKEN_FILE
    if not path.is_file():
        _write_private(path, secrets.token_urlsafe(32))
    return path.read_text(encoding="utf-8").strip()


def environment(home: Path) -> dict[str, str]:
    """What the server (and the kernels it starts) need in their environment; no secret here."""
    return {
        "JUPYTER_CONFIG_DIR": str(config_dir(home)),
        "JUPYTER_DATA_DIR": str(data_dir(home)),
        # The server's runtime files (jpserver-*.json, the open-browser page) hold the token, and
        # kernel connection files their HMAC keys: owner-only, beside the token.
        "JUPYTER_RUNTIME_DIR": str(config_dir(home) / "runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "CHIML_HOME": str(home),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def write_files(loaded: LoadedConfig) -> None:
    """The server config (with the token), the kernelspec and the notebooks folder."""
    home = loaded.home
    local = loaded.config.local
    notebooks_dir(home).mkdir(parents=True, exist_ok=True)
    server = {
        "IdentityProvider": {"token": token(home)},
        "ServerApp": {
            "ip": local.host,
            "port": local.ports.jupyterlab,
            "port_retries": 0,  # the port chiml.yaml names, or fail: `status` looks there
            "open_browser": False,
            "root_dir": str(notebooks_dir(home)),
            "allow_remote_access": False,
            # jupyter_server refuses root unless told; CI and Chameleon images run as root, and the
            # token plus the loopback bind are what protect it, not the user id.
            "allow_root": os.geteuid() == 0,
        },
        "LabApp": {"check_for_updates_class": "jupyterlab.NeverCheckForUpdate"},
    }
    _write_private(config_dir(home) / "jupyter_server_config.json", json.dumps(server, indent=1))
    write_kernelspec(home)


def write_kernelspec(home: Path, python: str | None = None) -> Path:
    """The ``chiml`` kernel: the platform's interpreter, with this home."""
    return kernelspec.write(data_dir(home) / "kernels", python or sys.executable, {"CHIML_HOME": str(home)})


def command() -> list[str]:
    return [str(jupyter_bin()), "--no-browser"]

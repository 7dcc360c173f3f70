"""Where chiml finds its config file and its home (state, data, logs).

Rules (the CLI and ``Platform.connect()`` share them, so a notebook anywhere in the project
finds the same platform):

1. ``--config FILE`` if given, else the first ``chiml.yaml`` in the working directory or one of
   its parents.
2. ``CHIML_HOME`` if set; else ``.chiml/`` beside the config file; else the first existing
   ``.chiml/`` in the working directory or a parent; else ``./.chiml``.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_NAME = "chiml.yaml"
HOME_DIRNAME = ".chiml"


def _walk_up(start: Path) -> list[Path]:
    start = start.resolve()
    return [start, *start.parents]


def find_config(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Path | None:
    """Return the config file to use, or None for the built-in local defaults."""
    if explicit is not None:
        return Path(explicit).expanduser().resolve()
    for directory in _walk_up(cwd or Path.cwd()):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def find_home(config_path: Path | None, cwd: Path | None = None) -> Path:
    """Return CHIML_HOME for this config (it need not exist yet)."""
    env = os.environ.get("CHIML_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if config_path is not None:
        return config_path.parent / HOME_DIRNAME
    for directory in _walk_up(cwd or Path.cwd()):
        candidate = directory / HOME_DIRNAME
        if candidate.is_dir():
            return candidate
    return (cwd or Path.cwd()).resolve() / HOME_DIRNAME


def repo_root() -> Path | None:
    """The source checkout this package runs from (editable installs), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "helm").is_dir() else None

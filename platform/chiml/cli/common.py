"""Options and helpers shared by every command module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from chiml.config import LoadedConfig, load_config

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="chiml.yaml to use (default: ./chiml.yaml or a parent's)", show_default=False),
]
ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", "-p", help="local | chameleon | kubernetes (overrides the file)", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def load(ctx: typer.Context, config: Path | None = None, profile: str | None = None) -> LoadedConfig:
    """Load the config; per-command options win over the ones given before the command."""
    root = ctx.find_root().obj or {}
    return load_config(config or root.get("config"), profile or root.get("profile"))


def print_json(data: Any) -> None:
    # Plain print: rich would wrap long lines and break the JSON for `jq`.
    print(json.dumps(data, indent=2, default=str))

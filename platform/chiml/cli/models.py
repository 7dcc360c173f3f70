"""`chiml models`: the MLflow model registry (register, list, describe, promote, archive)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer

from chiml.cli.common import ConfigOption, JsonOption, ProfileOption, connect, console, print_json, print_table

if TYPE_CHECKING:
    from chiml.lifecycle.registry import ModelRegistry

app = typer.Typer(help="The model registry (MLflow's): register runs' models, promote versions with aliases.")


def _registry(ctx: typer.Context) -> ModelRegistry:
    return connect(ctx).models


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M") if ms else ""


@app.command("register")
def register_cmd(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(help="run id (a study's parent run means its best trial), runs:/ or models:/ URI")
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="registered model name")],
    description: Annotated[str | None, typer.Option(help="version description")] = None,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Register the model logged by a run as a new version of NAME."""
    version = _registry(ctx).register(source, name, description=description)
    if json_out:
        print_json(version.to_json())
        return
    console.print(
        f"registered [bold]{name}[/] version {version.version} ({version.uri}) from {version.source}", soft_wrap=True
    )


@app.command("list")
def list_cmd(
    ctx: typer.Context, config: ConfigOption = None, profile: ProfileOption = None, json_out: JsonOption = False
) -> None:
    """List registered models with their latest version and aliases."""
    models = _registry(ctx).list()
    if json_out:
        print_json([m.to_json() for m in models])
        return
    rows = [[m.name, m.latest_version or "", ", ".join(f"@{a}→v{v}" for a, v in sorted(m.aliases.items())),
             _when(m.updated)] for m in models]
    print_table("registered models", ["name", "latest", "aliases", "updated"], rows)


@app.command("describe")
def describe_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="registered model name")],
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show every version of NAME: source run, aliases, archived or not."""
    model = _registry(ctx).describe(name)
    if json_out:
        print_json(model.to_json())
        return
    rows = [[v.version, ", ".join("@" + a for a in v.aliases), "archived" if v.archived else v.status.lower(),
             v.run_id or "", v.source, _when(v.created)] for v in model.versions]
    columns = ["version", "aliases", "status", "run", "source", "created"]
    print_table(f"{model.name} {model.description}".strip(), columns, rows)


@app.command("promote")
def promote_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[int, typer.Option("--version", "-v", help="version to promote")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="alias to point at it")] = "production",
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Point ALIAS (default: production) at a version: deploy models:/NAME@ALIAS to serve it."""
    info = _registry(ctx).promote(name, version, alias)
    if json_out:
        print_json(info.to_json())
        return
    console.print(f"models:/{name}@{alias} → version {info.version}")


@app.command("archive")
def archive_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[int, typer.Option("--version", "-v", help="version to archive")],
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Archive a version: its aliases are removed and it is marked Archived."""
    info = _registry(ctx).archive(name, version)
    if json_out:
        print_json(info.to_json())
        return
    console.print(f"archived {name} version {info.version}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="models")

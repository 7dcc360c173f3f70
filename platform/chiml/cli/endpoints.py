"""`chiml endpoints`: list, describe, scale, delete and read the logs of model endpoints."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from chiml.cli.common import ConfigOption, JsonOption, ProfileOption, connect, console, print_json
from chiml.errors import ChimlError

endpoints_app = typer.Typer(help="List, describe, scale and delete model endpoints.", no_args_is_help=True)

NameArgument = Annotated[str, typer.Argument(help="endpoint name")]
_STATUS_STYLE = {"ready": "green", "starting": "yellow", "failed": "red", "stopped": "dim", "unknown": "dim"}


def _backend(ctx: typer.Context) -> Any:
    return connect(ctx).endpoints


@endpoints_app.command("list")
def list_endpoints(
    ctx: typer.Context, config: ConfigOption = None, profile: ProfileOption = None, json_out: JsonOption = False
) -> None:
    """Every endpoint with its model, runtime, replicas, status and URL."""
    endpoints = _backend(ctx).list()
    if json_out:
        print_json([endpoint.to_json() for endpoint in endpoints])
        return
    if not endpoints:
        console.print("no endpoints (deploy one with `chiml deploy MODEL_URI --name NAME`)")
        return
    table = Table(title="endpoints", title_justify="left")
    for column in ("name", "status", "model", "runtime", "replicas", "workers", "url"):
        table.add_column(column, overflow="fold")
    for e in endpoints:
        style = _STATUS_STYLE.get(e.status, "")
        table.add_row(
            e.name, f"[{style}]{e.status}[/]", e.model_uri, e.runtime, str(e.replicas), str(e.workers), e.url or ""
        )
    console.print(table)


@endpoints_app.command("describe")
def describe(
    ctx: typer.Context,
    name: NameArgument,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """One endpoint, with the model's inputs and outputs (from GET /v2/models/NAME)."""
    from chiml.serving.client import model_metadata

    endpoint = _backend(ctx).get(name)
    data = endpoint.to_json()
    if endpoint.status == "ready" and endpoint.url:
        try:
            data["metadata"] = model_metadata(endpoint.url, name, refresh=True)
        except ChimlError as err:
            data["metadata_error"] = err.message
    if json_out:
        print_json(data)
        return
    for key in ("name", "status", "model_uri", "runtime", "replicas", "workers", "url", "created"):
        console.print(f"[bold]{key}[/]: {data[key]}", highlight=False)
    for kind in ("inputs", "outputs"):
        for tensor in data.get("metadata", {}).get(kind, []):
            console.print(f"[bold]{kind[:-1]}[/]: {tensor['name']} {tensor['datatype']} {tensor['shape']}")


@endpoints_app.command("scale")
def scale(
    ctx: typer.Context,
    name: NameArgument,
    replicas: Annotated[int, typer.Argument(min=1, max=64, help="the number of replicas wanted")],
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Change an endpoint's number of replicas (waits for new replicas to answer)."""
    endpoint = _backend(ctx).scale(name, replicas)
    if json_out:
        print_json(endpoint.to_json())
        return
    console.print(f"[green]scaled[/] {name} to {endpoint.replicas} replica(s) ({endpoint.status})")


@endpoints_app.command("delete")
def delete(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="endpoint name(s)")],
    config: ConfigOption = None,
    profile: ProfileOption = None,
) -> None:
    """Stop endpoints and remove their processes, state and files."""
    backend = _backend(ctx)
    for name in names:
        with console.status(f"deleting {name}…"):
            backend.delete(name)
        console.print(f"[green]deleted[/] {name}")


@endpoints_app.command("logs")
def logs(
    ctx: typer.Context,
    name: NameArgument,
    replica: Annotated[int, typer.Option("--replica", min=0, help="which replica's log")] = 0,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="how many lines from the end")] = 50,
    config: ConfigOption = None,
    profile: ProfileOption = None,
) -> None:
    """Print the end of an endpoint's server log (local profile)."""
    backend = _backend(ctx)
    path = backend.log_file(name, replica)
    if not path.exists():
        raise ChimlError(f"no log yet for {name} replica {replica} ({path})")
    tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    print("\n".join(tail))


def register(app: typer.Typer) -> None:
    app.add_typer(endpoints_app, name="endpoints")

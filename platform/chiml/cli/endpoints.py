"""`chiml endpoints`: list, describe, update, scale, delete and read the logs of model endpoints."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from chiml.cli.common import ConfigOption, JsonOption, ProfileOption, connect, console, err_console, print_json
from chiml.errors import ChimlError

endpoints_app = typer.Typer(help="List, describe, update, scale and delete model endpoints.", no_args_is_help=True)

NameArgument = Annotated[str, typer.Argument(help="endpoint name")]
MinReplicasOption = Annotated[
    int | None, typer.Option("--min-replicas", min=1, max=64, help="autoscale from this many replicas")
]
MaxReplicasOption = Annotated[
    int | None, typer.Option("--max-replicas", min=1, max=64, help="autoscale up to this many replicas")
]
ScaleMetricOption = Annotated[
    str | None,
    typer.Option(
        "--scale-metric",
        help="what autoscaling keeps per replica: concurrency (in-flight requests; local default) or cpu; "
        "on a cluster cpu (default) or memory",
        show_default=False,
    ),
]
ScaleTargetOption = Annotated[
    int | None,
    typer.Option("--scale-target", min=1, help="the metric's target per replica (default: 8 requests, 80% CPU)",
                 show_default=False),
]
_STATUS_STYLE = {"ready": "green", "starting": "yellow", "updating": "yellow", "failed": "red", "stopped": "dim",
                 "unknown": "dim"}


def progress_line(message: str) -> None:
    """Render a progress report of the library (stderr, so --json output stays clean)."""
    err_console.print(f"[dim]{message}[/]", highlight=False, soft_wrap=True)


def print_objects(objects: list[dict[str, Any]], json_out: bool) -> None:
    """Like ``kubectl --dry-run=client -o yaml``: YAML documents, or one JSON list."""
    from chiml.cli.train import _print_objects

    _print_objects(objects, json_out)


def _backend(ctx: typer.Context) -> Any:
    return connect(ctx).endpoints


def _scaling_text(e: Any) -> str:
    if e.max_replicas == e.min_replicas:
        return str(e.replicas)
    return f"{e.replicas} ({e.min_replicas}-{e.max_replicas} by {e.scale_metric})"


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
            e.name, f"[{style}]{e.status}[/]", e.model_uri, e.runtime, _scaling_text(e), str(e.workers), e.url or ""
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
    """One endpoint: model, replicas behind its URL, autoscaling and its decisions, inputs and outputs."""
    from chiml.serving.client import endpoint_auth, model_metadata

    backend = _backend(ctx)
    endpoint = backend.get(name)
    data = endpoint.to_json()
    if endpoint.status == "ready" and endpoint.url:
        try:
            data["metadata"] = model_metadata(endpoint.url, name, refresh=True, auth=endpoint_auth(backend))
        except ChimlError as err:
            data["metadata_error"] = err.message
    if json_out:
        print_json(data)
        return
    for key in ("name", "status", "model_uri", "runtime", "url", "workers", "created"):
        console.print(f"[bold]{key}[/]: {data[key]}", highlight=False, soft_wrap=True)
    console.print(f"[bold]replicas[/]: {_scaling_text(endpoint)}"
                  + (f", target {endpoint.scale_target} per replica" if endpoint.scale_target else ""), highlight=False)
    for replica in endpoint.replica_info:
        console.print(f"  replica {replica['id']}: {replica['url']} process {replica['process']}, "
                      f"front {replica['front']}, {replica['in_flight']} in flight", highlight=False)
    for event in endpoint.events[-10:]:
        sizes = f"{event.get('from', '?')} -> {event.get('to', '?')}"
        console.print(f"[bold]scaled[/] {event['time']}: {sizes}: {event['why']}", highlight=False, soft_wrap=True)
    for kind in ("inputs", "outputs"):
        for tensor in data.get("metadata", {}).get(kind, []):
            console.print(f"[bold]{kind[:-1]}[/]: {tensor['name']} {tensor['datatype']} {tensor['shape']}")


@endpoints_app.command("scale")
def scale(
    ctx: typer.Context,
    name: NameArgument,
    replicas: Annotated[
        int | None, typer.Argument(min=1, max=64, help="a fixed number of replicas (stops autoscaling)")
    ] = None,
    min_replicas: MinReplicasOption = None,
    max_replicas: MaxReplicasOption = None,
    scale_metric: ScaleMetricOption = None,
    scale_target: ScaleTargetOption = None,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Set an endpoint's replicas (new ones answer before this returns; removed ones finish their
    requests first), or an autoscaling range with --min-replicas/--max-replicas."""
    endpoint = _backend(ctx).scale(
        name, replicas, min_replicas=min_replicas, max_replicas=max_replicas, scale_metric=scale_metric,
        scale_target=scale_target, progress=progress_line,
    )  # fmt: skip
    if json_out:
        print_json(endpoint.to_json())
        return
    console.print(f"[green]scaled[/] {name} to {_scaling_text(endpoint)} replica(s) ({endpoint.status})",
                  highlight=False)


@endpoints_app.command("update")
def update(
    ctx: typer.Context,
    name: NameArgument,
    model_uri: Annotated[str, typer.Argument(help="the model (version) to serve now")],
    runtime: Annotated[
        str | None, typer.Option("--runtime", "-r", help="runtime for the new model (default: serving.runtime)")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, max=64, help="server processes per replica")
    ] = None,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Serve another model on an existing endpoint: a rolling update, no failed request."""
    endpoint = _backend(ctx).update(name, model_uri, runtime=runtime, workers=workers,
                                                     progress=progress_line)
    if json_out:
        print_json(endpoint.to_json())
        return
    console.print(f"[green]updated[/] {name}: {endpoint.model_uri} ({endpoint.runtime}) at {endpoint.url}",
                  highlight=False, soft_wrap=True)


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
    replica: Annotated[int | None, typer.Option("--replica", min=0, help="which replica's log (by id)")] = None,
    front: Annotated[bool, typer.Option("--front", help="the front's (HAProxy) log")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="how many lines from the end")] = 50,
    config: ConfigOption = None,
    profile: ProfileOption = None,
) -> None:
    """Print the end of an endpoint's server log (local profile)."""
    backend = _backend(ctx)
    path = backend.front_log_file(name) if front else backend.log_file(name, replica)
    if not path.exists():
        raise ChimlError(f"no log yet for {name} ({path})")
    tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    print("\n".join(tail))


def register(app: typer.Typer) -> None:
    app.add_typer(endpoints_app, name="endpoints")

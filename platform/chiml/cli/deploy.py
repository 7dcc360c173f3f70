"""`chiml deploy`: serve a model as an inference endpoint (or update the endpoint of that name)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from chiml.cli.common import ConfigOption, JsonOption, ProfileOption, connect, console, print_json
from chiml.cli.endpoints import (
    MaxReplicasOption,
    MinReplicasOption,
    ScaleMetricOption,
    ScaleTargetOption,
    print_objects,
    progress_line,
)


def deploy(
    ctx: typer.Context,
    model_uri: Annotated[
        str, typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN/PATH or a local model folder")
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="endpoint name (a DNS label: a-z, 0-9, '-')")],
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            "-r",
            help="mlflow (pyfunc, any logged model), auto (the runtime `chiml optimize` chose) or a compiled "
            "runtime (onnxruntime, openvino, deepsparse, tensorrt); default: serving.runtime",
            show_default=False,
        ),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option("--replicas", min=1, max=64, help="a fixed number of replicas (default: serving.replicas)"),
    ] = None,
    min_replicas: MinReplicasOption = None,
    max_replicas: MaxReplicasOption = None,
    scale_metric: ScaleMetricOption = None,
    scale_target: ScaleTargetOption = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, max=64, help="server processes per replica (default: serving.workers)"),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="cluster profiles: print the InferenceService (YAML; --json: a list), "
                     "contact nothing"),
    ] = False,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Deploy a model as an endpoint (KServe V1/V2 REST) and wait until it answers.

    An endpoint of that name already there is updated in place: its replicas are replaced one
    by one (local: behind its front; cluster: a patch of the InferenceService), with no failed
    request. Its replica count is kept unless --replicas or a --min/--max range is given.
    """
    platform = connect(ctx)
    options: dict[str, Any] = {
        "runtime": runtime, "replicas": replicas, "workers": workers, "min_replicas": min_replicas,
        "max_replicas": max_replicas, "scale_metric": scale_metric, "scale_target": scale_target,
    }  # fmt: skip
    if dry_run:
        print_objects(platform.deploy(model_uri, name, dry_run=True, **options), json_out)
        return
    endpoint = platform.deploy(model_uri, name, progress=progress_line, **options)
    if json_out:
        print_json(endpoint.to_json())
        return
    scaling = (f"{endpoint.replicas} replica(s)" if endpoint.max_replicas == endpoint.min_replicas
               else f"{endpoint.replicas} replica(s), autoscaling {endpoint.min_replicas}-{endpoint.max_replicas}")
    console.print(f"[green]deployed[/] {endpoint.name} ({endpoint.runtime}, {scaling}) at {endpoint.url}",
                  highlight=False, soft_wrap=True)
    console.print(f"  metadata: {endpoint.url}/v2/models/{endpoint.name}", highlight=False, soft_wrap=True)
    console.print(f"  predict:  chiml predict {endpoint.name} --file request.json", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)

"""`chiml deploy`: serve a model as an inference endpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from chiml.cli.common import ConfigOption, JsonOption, ProfileOption, connect, console, print_json


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
        int | None, typer.Option("--replicas", min=1, max=64, help="replicas (default: serving.replicas)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, max=64, help="server processes per replica (default: serving.workers)"),
    ] = None,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Deploy a model as an endpoint (KServe V1/V2 REST) and wait until it answers."""

    platform = connect(ctx)
    endpoint = platform.deploy(model_uri, name, runtime=runtime, replicas=replicas, workers=workers)
    if json_out:
        print_json(endpoint.to_json())
        return
    console.print(
        f"[green]deployed[/] {endpoint.name} ({endpoint.runtime}, {endpoint.replicas} replica(s)) at {endpoint.url}"
    )
    console.print(f"  metadata: {endpoint.url}/v2/models/{endpoint.name}")
    console.print(f"  predict:  chiml predict {endpoint.name} --file request.json")


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)

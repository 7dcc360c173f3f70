"""`chiml train`: run a script or module:function as a tracked MLflow run."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from chiml.cli.common import ConfigOption, JsonOption, ProfileOption, connect, console, err_console, print_json
from chiml.errors import InvalidInputError

ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-P",
        help="KEY=VALUE passed to the script (repeatable); VALUE is read as JSON when it parses (5, 0.1, true, "
        '"[1,2]"), else as text',
        show_default=False,
    ),
]
ExperimentOption = Annotated[
    str | None, typer.Option("--experiment", "-e", help="MLflow experiment (default: training.experiment)")
]


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["epochs=5", "opt=adam"]`` → ``{"epochs": 5, "opt": "adam"}``."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInputError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def train(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="a script (train.py) or module:function", show_default=False)],
    args: Annotated[
        list[str] | None, typer.Argument(help="arguments for the script (after --)", show_default=False)
    ] = None,
    param: ParamOption = None,
    experiment: ExperimentOption = None,
    run_name: Annotated[str | None, typer.Option("--run-name", "-n", help="MLflow run name")] = None,
    gpu: Annotated[
        bool | None, typer.Option("--gpu/--no-gpu", help="use a GPU when present (default) or hide GPUs")
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(
            "--gpus",
            min=0,
            help="GPUs for the run: on a cluster nvidia.com/gpu on a GPU node, locally the first N devices",
        ),
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="stop the script after this many seconds")] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="return the run id once the run started; follow it with "
                                                 "`chiml runs logs RUN_ID -f`")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="cluster profiles: print the Kubernetes objects (YAML; --json: a list), create nothing"
        ),
    ] = False,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Run TARGET as a tracked run: MLflow run + TensorBoard dir + params wired in, output captured.

    Prints the run id and its MLflow URL; exits with the script's exit status. On the kubernetes
    and chameleon profiles the script runs as a Kubernetes Job on the cluster (--dry-run prints
    it instead).
    """
    platform = connect(ctx)

    def started(run_id: str, url: str) -> None:
        err_console.print(f"[bold]run[/] {run_id} started: {url}", highlight=False, soft_wrap=True)

    def echo(stream: str, line: str) -> None:
        # With --json, stdout is reserved for the result: the script's output goes to stderr.
        (err_console if json_out or stream == "stderr" else console).out(line, end="", highlight=False)

    def progress(message: str) -> None:
        err_console.print(f"[dim]{message}[/]", highlight=False, soft_wrap=True)

    result = platform.train(
        target,
        parse_params(param),
        experiment=experiment,
        run_name=run_name,
        args=args or [],
        gpu=gpu,
        gpus=gpus,
        timeout=timeout,
        echo=echo,
        on_start=started,
        progress=progress,
        detach=detach,
        dry_run=dry_run,
    )
    if isinstance(result, list):  # --dry-run: the objects it would create
        _print_objects(result, json_out)
        return
    if detach:
        if json_out:
            print_json(result.to_json())
        else:
            console.print(f"run {result.run_id} started: {result.run_url}", highlight=False, soft_wrap=True)
            err_console.print(f"follow it with `chiml runs logs {result.run_id} -f`, stop it with "
                              f"`chiml runs cancel {result.run_id}`", highlight=False, soft_wrap=True)
        return
    if json_out:
        print_json(result.to_json())
    else:
        colour = "green" if result.status == "FINISHED" else "red"
        console.print(f"[{colour}]{result.status}[/] run {result.run_id} (exit {result.exit_code})", highlight=False)
        console.print(f"  mlflow:      {result.run_url}", highlight=False, soft_wrap=True)
        console.print(f"  model:       {result.model_uri or '(none logged)'}", highlight=False, soft_wrap=True)
        console.print(f"  tensorboard: {result.tensorboard_dir}", highlight=False, soft_wrap=True)
    if result.exit_code != 0:
        raise typer.Exit(result.exit_code if result.exit_code > 0 else 1)


def _print_objects(objects: list[dict[str, Any]], json_out: bool) -> None:
    """Like ``kubectl --dry-run=client -o yaml``: YAML documents, or one JSON list."""
    if json_out:
        print_json(objects)
        return
    import yaml

    print(yaml.safe_dump_all(objects, sort_keys=False), end="")


def register(app: typer.Typer) -> None:
    app.command("train")(train)

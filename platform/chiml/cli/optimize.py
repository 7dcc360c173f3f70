"""`chiml optimize`: compile a registered model for each runtime, gate, measure and pick one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chiml.cli.common import (
    ConfigOption,
    JsonOption,
    ProfileOption,
    connect,
    console,
    err_console,
    print_json,
    print_table,
)
from chiml.errors import ChimlError, InvalidInputError
from chiml_contract.runtimes import names as runtime_names

TARGET_HELP = ("auto (measure every runtime, pick the fastest that passes) or one of: "
               + ", ".join(runtime_names(compiled=True)) + " (onnxruntime-int8: ONNX Runtime with INT8, see --int8)")


def _batches(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidInputError(f"--batch-sizes must be comma-separated integers, not {text!r}") from None
    if not values or any(value < 1 for value in values):
        raise InvalidInputError("--batch-sizes needs positive integers, e.g. 1,8,64")
    return values


def optimize_command(
    ctx: typer.Context,
    model_uri: Annotated[str, typer.Argument(help="registered model: models:/NAME@ALIAS or models:/NAME/VERSION")],
    target: Annotated[str, typer.Option("--target", "-t", help=TARGET_HELP)] = "auto",
    objective: Annotated[
        str | None, typer.Option(help="latency (batch-1 p50, default) or throughput: what auto optimizes")
    ] = None,
    allow_deepsparse: Annotated[
        bool | None,
        typer.Option("--allow-deepsparse/--no-deepsparse",
                     help="let auto try DeepSparse (end-of-life, evaluation-only licence; installed into its own "
                          "environment under CHIML_HOME/envs on first use)"),
    ] = None,
    int8: Annotated[bool, typer.Option("--int8", help="also try ONNX Runtime with dynamic INT8 quantization")] = False,
    sample: Annotated[
        Path | None, typer.Option(help="held-out inputs for the gate (.npy/.npz/.csv); default: the input example")
    ] = None,
    batch_sizes: Annotated[str | None, typer.Option(help="batch sizes to time, e.g. 1,8,64")] = None,
    threads: Annotated[int | None, typer.Option(help="intra-op threads for every runtime (default: all cores)")] = None,
    budget: Annotated[float, typer.Option(help="seconds of timed calls per runtime and batch size")] = 1.0,
    atol: Annotated[float | None, typer.Option(help="gate: absolute tolerance")] = None,
    rtol: Annotated[float | None, typer.Option(help="gate: relative tolerance")] = None,
    min_top1: Annotated[float | None, typer.Option(help="gate: minimum top-1 agreement for classifiers")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="cluster profiles: print the Jobs (one per runtime; YAML, --json: a "
                                             "list), create nothing")
    ] = False,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Compile MODEL_URI for each runtime, check its answers, benchmark it and record the fastest.

    Every candidate runs in its own process with the same thread count (on a cluster: in a Job on the node class that serves it, with its serving pod's resources); one whose outputs differ from the original beyond the tolerance is rejected with the numbers. The result (artifacts, table, plot, metrics) is an MLflow run linked to the model version; `chiml deploy MODEL_URI --runtime auto` serves the winner.
    """  # noqa: E501 (typer reflows the paragraph; a hard-wrapped docstring shows ragged in --help)
    from chiml.cli.endpoints import print_objects
    from chiml.optimize.deepsparse_env import LICENCE_NOTE

    platform = connect(ctx)
    if dry_run:
        objects = platform.optimize(model_uri, target, dry_run=True, objective=objective,
                                    allow_deepsparse=allow_deepsparse, int8=int8, batches=_batches(batch_sizes),
                                    threads=threads, budget_s=budget)
        print_objects(objects, json_out)
        return
    wants_deepsparse = target == "deepsparse" or (
        target == "auto" and (allow_deepsparse if allow_deepsparse is not None
                              else platform.config.optimize.allow_deepsparse))
    if wants_deepsparse and not json_out:
        err_console.print(f"[yellow]note:[/] {LICENCE_NOTE}.", highlight=False)
    with console.status("optimizing", spinner="dots") as status:
        def step(message: str) -> None:
            status.update(message)
            if not json_out:
                console.print(f"[dim]· {message}[/]", highlight=False)

        report = platform.optimize(model_uri, target, objective=objective, allow_deepsparse=allow_deepsparse,
                                   int8=int8, sample=sample, batches=_batches(batch_sizes), threads=threads,
                                   budget_s=budget, atol=atol, rtol=rtol, min_top1=min_top1, step=step)
    if json_out:
        print_json(report.to_json())
    else:
        print_table(*report.table_rows())
        if report.chosen:
            console.print(f"chosen: [bold]{report.chosen}[/] · MLflow run {report.run_id} · "
                          f"serve it with `chiml deploy {model_uri} --runtime auto`", highlight=False)
    if not report.chosen:
        raise ChimlError("no runtime passed the correctness gate (see the table)",
                         hint="loosen --atol/--rtol if the differences are acceptable")


def register(app: typer.Typer) -> None:
    app.command("optimize", no_args_is_help=True)(optimize_command)

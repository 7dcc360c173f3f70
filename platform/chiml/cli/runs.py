"""`chiml runs`: list, follow and cancel training runs and tuning studies, on every profile."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from chiml.cli.common import ConfigOption, JsonOption, ProfileOption, connect, console, print_json

if TYPE_CHECKING:
    from chiml.lifecycle.runs import Runs

runs_app = typer.Typer(help="List, follow and cancel training runs and tuning studies.", no_args_is_help=True)

RunArgument = Annotated[str, typer.Argument(help="MLflow run id (of a training run or a study)", show_default=False)]
_STATUS_STYLE = {"RUNNING": "yellow", "FINISHED": "green", "FAILED": "red", "KILLED": "red"}


def _runs(ctx: typer.Context) -> Runs:
    return connect(ctx).runs


@runs_app.command("list")
def list_runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="how many, newest first")] = 20,
    status: Annotated[
        str | None, typer.Option(help="only runs in this state: RUNNING, FINISHED, FAILED, KILLED")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="train or study")] = None,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """The training runs and studies chiml started, newest first, with where they run."""
    runs = _runs(ctx).list(limit=limit, status=status, kind=kind)
    if json_out:
        print_json([run.to_json() for run in runs])
        return
    if not runs:
        console.print("no runs (start one with `chiml train SCRIPT`)")
        return
    table = Table(title="runs", title_justify="left")
    for column in ("run id", "kind", "name", "status", "started", "where", "error"):
        table.add_column(column, overflow="fold")
    for run in runs:
        style = _STATUS_STYLE.get(run.status, "")
        where = run.job or run.where
        table.add_row(run.run_id, run.kind, run.name, f"[{style}]{run.status}[/]", run.started, where,
                      (run.error or "").splitlines()[-1][:80] if run.error else "")
    console.print(table)


@runs_app.command("logs")
def logs(
    ctx: typer.Context,
    run_id: RunArgument,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing while the run goes on")] = False,
    config: ConfigOption = None,
    profile: ProfileOption = None,
) -> None:
    """The run's output: live from its process or pods, else as stored with the run."""
    _runs(ctx).logs(run_id, follow=follow, echo=lambda line: console.out(line, end="",
                                                                                           highlight=False))


@runs_app.command("cancel")
def cancel(
    ctx: typer.Context,
    run_id: RunArgument,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Stop a running run: its Job is deleted (or its process stopped) and the run ends KILLED."""
    run = _runs(ctx).cancel(run_id)
    if json_out:
        print_json(run.to_json())
    else:
        console.print(f"run {run.run_id} {run.status}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")

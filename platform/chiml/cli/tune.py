"""`chiml tune`: an Optuna study run by parallel workers, every trial an MLflow child run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chiml.cli.common import ConfigOption, JsonOption, ProfileOption, connect, console, err_console, print_json
from chiml.cli.endpoints import print_objects
from chiml.cli.train import ExperimentOption, ParamOption, parse_params


def _dashboard_url(platform: object) -> str | None:
    """optuna-dashboard's URL if the profile runs one (best effort: status never raises)."""
    try:
        for service in platform.status():  # type: ignore[attr-defined]
            if "optuna" in service.name and service.url:
                return service.url
    except Exception:
        return None
    return None


def tune(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="a script (train.py) or module:function", show_default=False)],
    args: Annotated[
        list[str] | None, typer.Argument(help="arguments for the script (after --)", show_default=False)
    ] = None,
    trials: Annotated[int, typer.Option("--trials", "-t", help="trials to run (more, when resuming)")] = 20,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", help="parallel worker processes (default: training.tune_workers)")
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", "-s", help="study name; an existing study is continued")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option("--metric", "-m", help="logged metric to optimize (default: ct.report() / the return value)"),
    ] = None,
    direction: Annotated[
        str | None, typer.Option("--direction", "-d", help="minimize (default for a new study) or maximize")
    ] = None,
    sampler: Annotated[str | None, typer.Option(help="tpe (default) | random | qmc | gp | cmaes")] = None,
    pruner: Annotated[
        str | None, typer.Option(help="median (default) | hyperband | successive-halving | none")
    ] = None,
    param: ParamOption = None,
    experiment: ExperimentOption = None,
    threads: Annotated[
        int | None, typer.Option(help="intra-op threads per worker (default: training.threads_per_worker)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="sampler seed (worker i uses seed+i)")] = None,
    timeout: Annotated[float | None, typer.Option(help="start no new trial after this many seconds")] = None,
    gpus: Annotated[
        int | None,
        typer.Option("--gpus", min=0, help="GPUs per worker: on a cluster nvidia.com/gpu on a GPU node, locally "
                                           "devices dealt out to the workers (0 hides them)"),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="cluster profiles: print the Kubernetes objects (YAML; --json: a list), "
                                       "create nothing"),
    ] = False,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Tune TARGET: search spaces come from ct.params(...), fixed values from --param.

    The study lives in the platform's Optuna storage (see it in optuna-dashboard); each trial is an
    MLflow child run of the study's run; the best trial's model is logged. On the kubernetes and
    chameleon profiles the workers are pods of one Kubernetes Job.
    """

    platform = connect(ctx)
    if dry_run:
        objects = platform.tune(target, trials=trials, workers=workers, study_name=study, metric=metric,
                                direction=direction, sampler=sampler, pruner=pruner, params=parse_params(param),
                                experiment=experiment, threads_per_worker=threads, seed=seed, timeout=timeout,
                                args=args or [], gpus=gpus, dry_run=True)
        print_objects(objects, json_out)
        return
    progress = Progress(
        TextColumn("[bold]tuning[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=json_out,
    )
    task = progress.add_task("tune", total=None, detail="starting workers…")

    def update(snapshot: object) -> None:
        s = snapshot  # StudyProgress
        best = "—" if s.best_value is None else f"{s.best_value:.6g}"  # type: ignore[attr-defined]
        done = s.complete + s.pruned + s.failed  # type: ignore[attr-defined]
        detail = (
            f"complete {s.complete} pruned {s.pruned} failed {s.failed} "  # type: ignore[attr-defined]
            f"running {s.running} · best {best} · workers {s.workers}"  # type: ignore[attr-defined]
        )
        progress.update(task, total=s.goal, completed=done, detail=detail)  # type: ignore[attr-defined]

    with progress:
        result = platform.tune(
            target,
            trials=trials,
            workers=workers,
            study_name=study,
            metric=metric,
            direction=direction,
            sampler=sampler,
            pruner=pruner,
            params=parse_params(param),
            experiment=experiment,
            threads_per_worker=threads,
            seed=seed,
            timeout=timeout,
            args=args or [],
            gpus=gpus,
            progress=update,
        )
    if json_out:
        print_json(result.to_json())
        return
    console.print(
        f"[green]study {result.study_name}[/]: {result.n_complete} complete, {result.n_pruned} pruned, "
        f"{result.n_failed} failed ({result.n_trials} trials in all)",
        highlight=False,
        soft_wrap=True,
    )
    best = f"{result.best_value} ({result.direction}), trial {result.best_trial}"
    console.print(f"  best value:  {best}", highlight=False)
    console.print(f"  best params: {result.best_params}", highlight=False, soft_wrap=True)
    model = result.model_uri or "(none logged)"
    console.print(f"  best run:    {result.best_run_id}", highlight=False)
    console.print(f"  best model:  {model}", highlight=False, soft_wrap=True)
    console.print(f"  study run:   {result.parent_run_url}", highlight=False, soft_wrap=True)
    dashboard = _dashboard_url(platform)
    if dashboard:
        console.print(f"  dashboard:   {dashboard}", highlight=False, soft_wrap=True)
    console.print(
        f"  register:    chiml models register {result.parent_run_id} --name NAME", highlight=False, soft_wrap=True
    )


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)

"""Platform commands: up, down, status, logs, smoke, version."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from chiml.cli.common import ConfigOption, JsonOption, ProfileOption, console, load, print_json
from chiml.errors import ChimlError
from chiml.profiles import ServiceStatus, get_profile


def _status_table(statuses: list[ServiceStatus], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("service")
    table.add_column("health")
    table.add_column("url")
    table.add_column("detail", overflow="fold")
    for s in statuses:
        health = "[green]healthy[/]" if s.healthy else "[red]down[/]"
        table.add_row(s.name, health, s.url or "", s.detail)
    return table


def up(
    ctx: typer.Context,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would be done; touch nothing")] = False,
    json_out: JsonOption = False,
) -> None:
    """Start the platform (idempotent: a second `up` starts nothing new) and print its URLs."""
    loaded = load(ctx)
    prof = get_profile(loaded)
    started = time.monotonic()
    with console.status(f"bringing up the {prof.name} platform…") as spinner:

        def progress(message: str) -> None:
            spinner.update(message)
            console.log(message)

        statuses = prof.up(dry_run=dry_run, progress=progress)
    if json_out:
        print_json([s.to_json() for s in statuses])
        return
    if dry_run:
        return
    console.print(_status_table(statuses, f"chiml {prof.name} platform — up in {time.monotonic() - started:.1f}s"))
    console.print(f"state: {loaded.home}")
    if not all(s.healthy for s in statuses):
        raise ChimlError("some services are not healthy", hint="see `chiml logs SERVICE`")


def down(
    ctx: typer.Context,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Stop the platform. Local data (runs, studies, models, endpoints) is kept for the next `up`."""
    loaded = load(ctx)
    prof = get_profile(loaded)
    with console.status("stopping…") as spinner:
        prof.down(yes=yes, progress=lambda m: spinner.update(m))
    kept = f" (data kept in {loaded.home})" if prof.name == "local" else ""
    console.print(f"[green]stopped[/] the {prof.name} platform{kept}")


def status(
    ctx: typer.Context,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="print generated credentials")] = False,
) -> None:
    """Health and URL of every service. Exits 1 when a service is down."""
    loaded = load(ctx)
    prof = get_profile(loaded)
    statuses = prof.status()
    secrets = prof.secrets() if show_secrets and hasattr(prof, "secrets") else None
    if json_out:
        data: dict = {"profile": prof.name, "home": str(loaded.home), "services": [s.to_json() for s in statuses]}
        if secrets is not None:
            data["secrets"] = secrets
        print_json(data)
    else:
        console.print(_status_table(statuses, f"chiml {prof.name} platform"))
        if secrets:
            for key, value in secrets.items():
                console.print(f"{key}: {value}", highlight=False)
    if not statuses or not all(s.healthy for s in statuses):
        raise typer.Exit(1)


_LOGS_HELP = "mlflow, optuna_dashboard, tensorboard, postgresql, supervisord, or endpoint-NAME-0"


def logs(
    ctx: typer.Context,
    service: Annotated[
        str,
        typer.Argument(
            help="service (mlflow, optuna_dashboard, tensorboard, postgresql, supervisord) or endpoint-NAME-0"
        ),
    ],
    config: ConfigOption = None,
    profile: ProfileOption = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="how many lines")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
) -> None:
    """Print a service's log."""
    loaded = load(ctx)
    get_profile(loaded).logs(service, lines=lines, follow=follow)


def smoke(
    ctx: typer.Context,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    extra: Annotated[list[str] | None, typer.Argument(help="extra pytest arguments")] = None,
) -> None:
    """Run the smoke suite (pytest-testinfra) against the running platform."""
    from chiml.smoke import run_smoke

    loaded = load(ctx)
    args, env = get_profile(loaded).smoke_args()
    result = run_smoke(args, env, extra)
    if result.returncode != 0:
        raise ChimlError(f"smoke tests failed (pytest exit {result.returncode})",
                         hint="a run in which every check was skipped fails too: nothing was verified")


def version() -> None:
    """Print chiml's version and those of the main components."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    import chiml

    console.print(f"chiml {chiml.__version__}")
    for name in ("mlflow", "optuna", "optuna-dashboard", "tensorboard", "kserve", "torch", "supervisor"):
        try:
            console.print(f"  {name} {pkg_version(name)}", highlight=False)
        except PackageNotFoundError:
            console.print(f"  {name} [dim]not installed[/]")


def register(app: typer.Typer) -> None:
    for fn in (up, down, status, logs, smoke, version):
        app.command(fn.__name__)(fn)

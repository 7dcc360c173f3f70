"""Platform commands: up, down, status, logs, smoke, version."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from chiml.cli import common
from chiml.cli.common import ConfigOption, JsonOption, ProfileOption, connect, console, print_json
from chiml.errors import ChimlError, InvalidInputError
from chiml.plan import UpPlan
from chiml.profiles import ServiceStatus


def _print_status(statuses: list[ServiceStatus], title: str) -> None:
    rows = [[s.name, "[green]healthy[/]" if s.healthy else "[red]down[/]", s.url or "", s.detail] for s in statuses]
    common.print_table(title, ["service", "health", "url", "detail"], rows)


def _print_plan(plan: UpPlan) -> None:
    # Plain print: the plan holds JSON and paths that rich would take for markup or wrap.
    for i, section in enumerate(plan.sections):
        if i:
            print()
        print(section.title)
        if section.rows:
            common.print_table("", section.columns, [[_escape(cell) for cell in row] for row in section.rows])
        for line in section.lines:
            print(line)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def up(
    ctx: typer.Context,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would be done; touch nothing")] = False,
    json_out: JsonOption = False,
) -> None:
    """Start the platform (idempotent: a second `up` starts nothing new) and print its URLs."""
    platform = connect(ctx)
    if dry_run:
        plan = platform.plan()
        if json_out:
            print_json(plan.to_json())
        else:
            _print_plan(plan)
        return
    started = time.monotonic()
    with common.progress_display(f"bringing up the {platform.profile.name} platform…") as progress:
        statuses = platform.up(progress=progress)
    if json_out:
        print_json([s.to_json() for s in statuses])
        return
    _print_status(statuses, f"chiml {platform.profile.name} platform — up in {time.monotonic() - started:.1f}s")
    console.print(f"state: {platform.home}", highlight=False)
    if not all(s.healthy for s in statuses):
        raise ChimlError("some services are not healthy", hint="see `chiml logs SERVICE`")


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        raise InvalidInputError("refusing to destroy without confirmation", hint="pass --yes")
    return typer.confirm(question, default=False, err=True)


def down(
    ctx: typer.Context,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Stop the platform. Local data (runs, studies, models, endpoints) is kept for the next `up`."""
    platform = connect(ctx)
    # No spinner: on Chameleon the loss is described and the question asked mid-way.
    platform.down(release_lease=yes, confirm=None if yes else _ask,
                  progress=lambda line: print(line, file=sys.stderr, flush=True))
    kept = f" (data kept in {platform.home})" if platform.profile.name == "local" else ""
    console.print(f"[green]stopped[/] the {platform.profile.name} platform{kept}", highlight=False)


def status(
    ctx: typer.Context,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="print generated credentials")] = False,
) -> None:
    """Health and URL of every service. Exits 1 when a service is down."""
    platform = connect(ctx)
    statuses = platform.status()
    secrets = platform.secrets() if show_secrets else None
    if json_out:
        data: dict[str, object] = {
            "profile": platform.profile.name, "home": str(platform.home), "services": [s.to_json() for s in statuses],
        }
        if secrets is not None:
            data["secrets"] = secrets
        print_json(data)
    else:
        _print_status(statuses, f"chiml {platform.profile.name} platform")
        for key, value in (secrets or {}).items():
            console.print(f"{key}: {value}", highlight=False)
    if not statuses or not all(s.healthy for s in statuses):
        raise typer.Exit(1)


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
    for line in connect(ctx).logs(service, lines=lines, follow=follow):
        print(line, end="", flush=follow)


def smoke(
    ctx: typer.Context,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    extra: Annotated[list[str] | None, typer.Argument(help="extra pytest arguments")] = None,
) -> None:
    """Run the smoke suite (pytest-testinfra) against the running platform."""
    from chiml.smoke import run_smoke

    args, env = connect(ctx).smoke_args()
    result = run_smoke(args, env, extra)
    if result.returncode != 0:
        raise ChimlError(f"smoke tests failed (pytest exit {result.returncode})",
                         hint="a run in which every check was skipped fails too: nothing was verified")


def version(json_out: JsonOption = False) -> None:
    """Print chiml's version and those of the main components."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    import chiml

    versions: dict[str, str | None] = {"chiml": chiml.__version__}
    for name in ("mlflow", "optuna", "optuna-dashboard", "tensorboard", "kserve", "torch", "supervisor"):
        try:
            versions[name] = pkg_version(name)
        except PackageNotFoundError:
            versions[name] = None
    if json_out:
        print_json(versions)
        return
    for name, found in versions.items():
        indent = "" if name == "chiml" else "  "
        console.print(f"{indent}{name} {found or '[dim]not installed[/]'}", highlight=False)


def register(app: typer.Typer) -> None:
    for fn in (up, down, status, logs, smoke, version):
        app.command(fn.__name__)(fn)

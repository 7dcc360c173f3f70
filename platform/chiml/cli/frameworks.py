"""`chiml frameworks list`: the ML frameworks installed in this environment, versions, GPU visibility."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from chiml.cli.common import JsonOption, console, print_json

frameworks_app = typer.Typer(help="The ML framework environments: what is installed, and what GPU it sees.",
                             no_args_is_help=True)


@frameworks_app.command("list")
def list_frameworks(
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="only these groups (repeatable)")] = None,
    json_out: JsonOption = False,
) -> None:
    """Every framework group with its frameworks' versions and whether each sees a GPU."""
    from chiml.frameworks import inspect

    with console.status("importing the frameworks (TensorFlow and JAX take a while)"):
        found = inspect(groups=tuple(group) if group else None)
    if json_out:
        print_json([framework.to_json() for framework in found])
        return
    table = Table(title="frameworks", title_justify="left")
    for column in ("group", "framework", "version", "gpu", "detail"):
        table.add_column(column, overflow="fold")
    for f in found:
        gpu = "—" if f.gpu is None else ("[green]yes[/]" if f.gpu else "no")
        version = f.version or ("" if f.installed else "[dim]not installed[/]")
        table.add_row(f.group, f.name, version, gpu if f.installed else "", f.detail)
    console.print(table)
    if not all(f.installed for f in found):
        console.print("[dim]install the missing groups with `make frameworks`[/]")


def register(app: typer.Typer) -> None:
    app.add_typer(frameworks_app, name="frameworks")

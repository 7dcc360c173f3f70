"""What every command module shares: the platform options, output helpers, progress rendering.

``--config``/``--profile`` are declared once, here, and accepted before the command
(``chiml -p local status``) or after it (``chiml status -p local``; the later one wins). Their
callback records the value on the click context, so a command never handles them itself: it
calls :func:`connect` (or :func:`load`) and makes its one SDK call.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table

from chiml.config import LoadedConfig, load_config
from chiml.progress import Progress

if TYPE_CHECKING:
    from chiml.sdk import Platform

console = Console()
err_console = Console(stderr=True)

_META = "chiml.platform_options"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    # click shares ``meta`` along the context chain: the root's value is seen by the command,
    # and a command's own option (parsed later) replaces it.
    if value is not None and param.name is not None:
        ctx.meta.setdefault(_META, {})[param.name] = value


# ``expose_value=False``: the option is listed in every command's --help, but its value reaches
# the command only through the context (see :func:`load`).
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="chiml.yaml to use (default: ./chiml.yaml or a parent's)",
        show_default=False,
        callback=_remember,
        expose_value=False,
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        help="local | chameleon | kubernetes (overrides the file)",
        show_default=False,
        callback=_remember,
        expose_value=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def load(ctx: typer.Context) -> LoadedConfig:
    """The config the ``--config``/``--profile`` options given (before or after the command) name."""
    options = ctx.meta.get(_META, {})
    return load_config(options.get("config"), options.get("profile"))


def connect(ctx: typer.Context) -> Platform:
    """The SDK handle every command makes its call on."""
    from chiml.sdk import Platform

    return Platform(load(ctx))


def print_json(data: Any) -> None:
    # Plain print: rich would wrap long lines and break the JSON for `jq`.
    print(json.dumps(data, indent=2, default=str))


def is_terminal() -> bool:
    """Whether stdout is a terminal (rich layout) rather than a pipe or a log file (plain text)."""
    return console.is_terminal


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table: drawn with rich on a terminal, plain aligned lines (one row a line, never folded)
    when piped or logged. Cells may carry rich markup; the plain layout drops it."""
    if is_terminal():
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    plain = [[_strip_markup(cell) for cell in row] for row in rows]
    widths = [max([len(column), *(len(row[i]) for row in plain)]) for i, column in enumerate(columns)]
    if title:
        print(_strip_markup(title))
    for line in [list(columns), *plain]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _strip_markup(text: str) -> str:
    from rich.text import Text

    return Text.from_markup(text).plain


@contextmanager
def progress_display(title: str, *, log_lines: bool = True) -> Iterator[Progress]:
    """A :data:`chiml.progress.Progress` callback that renders on stderr: a spinner on a terminal
    (each line also kept above it when ``log_lines``), plain lines when stderr is not a terminal."""
    if not err_console.is_terminal:
        yield lambda line: print(line, file=sys.stderr, flush=True)
        return
    with err_console.status(title) as spinner:

        def show(line: str) -> None:
            spinner.update(line)
            if log_lines:
                err_console.print(f"[dim]·[/] {line}", highlight=False, soft_wrap=True)

        yield show

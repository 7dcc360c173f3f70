"""Entry point: the Typer app, with the command modules in the order a user walks them."""

from __future__ import annotations

import logging
import sys
from types import ModuleType

import typer
from rich.logging import RichHandler

from chiml.cli import (
    deploy,
    endpoints,
    frameworks,
    images,
    lease,
    models,
    optimize,
    platform,
    predict,
    train,
    tune,
)
from chiml.cli.common import ConfigOption, ProfileOption, err_console
from chiml.errors import ChimlError

# `--help` lists commands in this order: the platform first, then the lifecycle as a user walks
# it, then the infrastructure and environment helpers. Each module has ``register(app)``.
COMMANDS: tuple[ModuleType, ...] = (
    platform,
    train,
    tune,
    models,
    optimize,
    deploy,
    predict,
    endpoints,
    lease,
    images,
    frameworks,
)

app = typer.Typer(
    name="chiml",
    help="chiml: train, track, tune and serve ML models on your machine, Kubernetes or Chameleon Cloud.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(config: ConfigOption = None, profile: ProfileOption = None) -> None:
    """The options given before the command (``chiml -p local status``) reach it through the context."""


for _module in COMMANDS:
    _module.register(app)


def main() -> None:
    """Console-script entry: user-facing errors are one line, never a traceback.

    Click's standalone mode handles usage errors and ``typer.Exit``; a :class:`ChimlError`
    passes through it and is printed here.
    """
    # Library code logs; the CLI shows its warnings on stderr, without source file names.
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False, markup=False)],
    )
    try:
        app()
    except ChimlError as err:
        err_console.print(f"[bold red]error:[/] {err.message}", highlight=False, soft_wrap=True)
        if err.hint:
            err_console.print(f"[dim]hint: {err.hint}[/]", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

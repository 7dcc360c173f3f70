"""Entry point: builds the Typer app from every module in :mod:`chiml.cli`.

Command modules are discovered, not listed, so that each capability adds its own file
without editing a shared one.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Annotated

import typer

import chiml.cli as cli_pkg
from chiml.cli.common import err_console
from chiml.errors import ChimlError

app = typer.Typer(
    name="chiml",
    help="chiml: train, track, tune and serve ML models on your machine, Kubernetes or Chameleon Cloud.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_NOT_COMMANDS = {"common", "main"}
# `--help` lists commands in registration order: the platform first, then the lifecycle as a
# user walks it. Modules not named here (a new capability) follow alphabetically.
_HELP_ORDER = ["platform", "train", "tune", "runs", "models", "optimize", "deploy", "predict", "endpoints", "lease"]


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="chiml.yaml to use")] = None,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="local | chameleon | kubernetes")] = None,
) -> None:
    ctx.obj = {"config": config, "profile": profile}


def _register_commands() -> None:
    def rank(module: pkgutil.ModuleInfo) -> tuple[int, str]:
        order = _HELP_ORDER.index(module.name) if module.name in _HELP_ORDER else len(_HELP_ORDER)
        return order, module.name

    for module in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=rank):
        if module.name in _NOT_COMMANDS or module.name.startswith("_"):
            continue
        mod = importlib.import_module(f"chiml.cli.{module.name}")
        register = getattr(mod, "register", None)
        if register is not None:
            register(app)


_register_commands()


def main() -> None:
    """Console-script entry: user-facing errors are one line, never a traceback.

    Click's standalone mode handles usage errors and ``typer.Exit``; a :class:`ChimlError`
    passes through it and is printed here.
    """
    try:
        app()
    except ChimlError as err:
        err_console.print(f"[bold red]error:[/] {err.message}", highlight=False, soft_wrap=True)
        if err.hint:
            err_console.print(f"[dim]hint: {err.hint}[/]", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

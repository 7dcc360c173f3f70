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

# Typer (0.25+) vendors click: its parser raises these, not the click package's.
from typer._click import exceptions as click_errors

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
_HELP_ORDER = ["platform", "train", "tune", "models", "optimize", "deploy", "predict", "endpoints", "lease"]


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


def _error(message: str, hint: str | None) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    if hint:
        err_console.print(f"[dim]hint: {hint}[/]", highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry: user-facing errors are one line, never a traceback.

    Click runs outside its standalone mode so that a usage error (a missing argument, a value
    of the wrong type, an unknown option) is one ``error:`` line too, with the command's help as
    the hint, instead of a framed panel; ``--help``, a call without arguments and
    ``typer.Exit`` behave as in standalone mode. A :class:`ChimlError` is printed the same way.
    """
    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as err:
        from typer import rich_utils

        rich_utils.rich_format_error(err)  # the help, as standalone mode shows it
        sys.exit(err.exit_code)
    except click_errors.UsageError as err:
        command = err.ctx.command_path if err.ctx is not None else "chiml"
        _error(err.format_message(), f"see `{command} --help`")
        sys.exit(err.exit_code)
    except click_errors.ClickException as err:
        _error(err.format_message(), None)
        sys.exit(err.exit_code)
    except typer.Abort:
        _error("aborted", None)
        sys.exit(1)
    except ChimlError as err:
        _error(err.message, err.hint)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

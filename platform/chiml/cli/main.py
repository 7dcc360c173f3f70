"""Entry point: the Typer app, with the command modules in the order a user walks them."""

from __future__ import annotations

import logging
import sys
from types import ModuleType

import typer
from rich.logging import RichHandler

# Typer (0.25+) vendors click: its parser raises these, not the click package's.
from typer._click import exceptions as click_errors

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
    runs,
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
    runs,
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
    # Library code logs; the CLI shows its warnings on stderr, without source file names.
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False, markup=False)],
    )
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

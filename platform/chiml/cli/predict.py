"""`chiml predict`: send a request to an endpoint and print the outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from chiml.cli.common import ConfigOption, ProfileOption, connect, console, print_json
from chiml.errors import InvalidInputError


def _read_request(file: Path | None, data: str | None) -> object:
    if (file is None) == (data is None):
        raise InvalidInputError("give exactly one of --file and --data")
    if file is not None:
        source = str(file)
        try:
            text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        except OSError as err:
            raise InvalidInputError(f"cannot read {file}: {err.strerror or err}") from None
    else:
        source, text = "--data", data or ""
    try:
        return json.loads(text)
    except ValueError as err:
        raise InvalidInputError(f"{source} is not valid JSON: {err}") from None


def predict(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="endpoint name")],
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="JSON request ('-' for stdin): a V2 body, {\"inputs\": [[...]]}, {\"instances\": [...]} or a list",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="the JSON request inline", show_default=False)
    ] = None,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the endpoint's whole V2 response")] = False,
) -> None:
    """Send a V2 inference request to an endpoint and print its outputs."""
    from chiml.serving.client import decode_outputs

    request = _read_request(file, data)
    response = connect(ctx).infer(name, request)
    if json_out:
        print_json(response)
        return
    output_datatypes = {output["name"]: output["datatype"] for output in response.get("outputs", [])}
    for output_name, array in decode_outputs(response).items():
        console.print(f"[bold]{output_name}[/] {output_datatypes[output_name]} {list(array.shape)}", highlight=False)
        print(json.dumps(array.tolist()))  # nested rows, as the output's shape says


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)

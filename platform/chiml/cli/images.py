"""`chiml images build`: build chiml's container images, and push them or copy them onto nodes."""

from __future__ import annotations

from typing import Annotated

import typer

from chiml.cli.common import ConfigOption, ProfileOption, console, load

images_app = typer.Typer(help="Build chiml's container images (services/images.yaml names them).",
                         no_args_is_help=True)


@images_app.command("build")
def build_command(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="images to build (default: all buildable here)")] = None,
    push: Annotated[
        str | None, typer.Option("--push", metavar="REGISTRY", help="tag under REGISTRY (e.g. ghcr.io/me) and push")
    ] = None,
    to_nodes: Annotated[
        bool, typer.Option("--to-nodes", help="copy them into every k3s node of the Chameleon deployment over SSH")
    ] = False,
    offline: Annotated[
        bool,
        typer.Option("--offline", help="no registry: never pull (local base, scripts/images_setup.sh) and use the "
                                       "host's pip configuration inside the build"),
    ] = False,
    variants: Annotated[bool, typer.Option("--variants", help="also the release-only variants (CUDA trainer)")] = False,
    engine: Annotated[str | None, typer.Option(help="podman, buildah or docker (default: the first found)")] = None,
    config: ConfigOption = None,
    profile: ProfileOption = None,
) -> None:
    """Build the images (one at a time), report their sizes and build times."""
    from chiml import images

    catalog = images.load_catalog()
    built = images.build(names or None, catalog=catalog, engine=engine, offline=offline, variants=variants,
                         progress=lambda line: console.print(line, highlight=False))
    refs = [b.ref for b in built]
    for b in built:
        size = f"{b.size_bytes / 1e6:.0f} MB" if b.size_bytes else "?"
        console.print(f"{b.ref}  {size}  {b.seconds:.0f}s", highlight=False)
    if push:
        pushed = images.push(images.retag(refs, push, catalog, engine=engine), engine=engine,
                             progress=lambda line: console.print(line, highlight=False))
        for ref, digest in pushed.items():
            console.print(f"{ref}@{digest}" if digest else ref, highlight=False)
    if to_nodes:
        from chiml.chameleon.deployment import ChameleonDeployment

        ssh_config = ChameleonDeployment(load(ctx)).ssh_config_path
        images.import_to_nodes(refs, ssh_config, engine=engine,
                               progress=lambda line: console.print(line, highlight=False))


def register(app: typer.Typer) -> None:
    app.add_typer(images_app, name="images")

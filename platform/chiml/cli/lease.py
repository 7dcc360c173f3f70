"""`chiml lease show|extend|delete`: the Chameleon lease of this deployment."""

from __future__ import annotations

from typing import Annotated

import typer

from chiml.cli.common import ConfigOption, JsonOption, ProfileOption, console, load, print_json
from chiml.errors import ChimlError

lease_app = typer.Typer(help="The Chameleon lease of this deployment (chameleon profile).", no_args_is_help=True)


def _deployment(ctx: typer.Context):  # type: ignore[no-untyped-def]
    from chiml.chameleon.deployment import STATE_KEY, ChameleonDeployment

    loaded = load(ctx)
    deployment = ChameleonDeployment(loaded)
    lease = (deployment.state.get(STATE_KEY) or {}).get("lease") or {}
    if not lease.get("id"):
        raise ChimlError("no lease recorded in this CHIML_HOME", hint="`chiml up --profile chameleon` makes one")
    return deployment, lease


@lease_app.command("show")
def show(
    ctx: typer.Context, config: ConfigOption = None, profile: ProfileOption = None, json: JsonOption = False
) -> None:
    """Show the lease: id, status, end and time left (warns within 48 h of the end)."""
    from chiml.chameleon.auth import check_credentials
    from chiml.chameleon.lease import LeaseInfo

    deployment, lease = _deployment(ctx)
    check_credentials(deployment.cfg.site)
    found = deployment.deps.lease_client.status(lease["id"])
    if found is None:
        raise ChimlError(f"lease {lease['id']} no longer exists in Blazar", hint="`chiml down` cleans up the rest")
    info = LeaseInfo.from_json({**lease, "status": found[0], "end": found[1]})
    left = info.time_left()
    data = {**info.to_json(), "hours_left": round(left.total_seconds() / 3600, 1) if left else None}
    if json:
        print_json(data)
        return
    console.print(f"lease {info.name} ({info.id}) at {deployment.cfg.site}: {info.status}, ends {info.end} "
                  f"({data['hours_left']} h left); floating IP {info.floating_ip or '-'}", highlight=False)
    warning = info.expiry_warning()
    if warning:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@lease_app.command("extend")
def extend(
    ctx: typer.Context,
    hours: Annotated[int, typer.Option("--hours", min=1, max=168, help="how many hours to add")] = 24,
    config: ConfigOption = None,
    profile: ProfileOption = None,
) -> None:
    """Extend the lease (Blazar allows it within 48 h of the end, up to 7 days, if the hosts are free)."""
    from chiml.chameleon.auth import check_credentials
    from chiml.chameleon.deployment import STATE_KEY

    deployment, lease = _deployment(ctx)
    check_credentials(deployment.cfg.site)
    with console.status(f"extending lease {lease.get('name')} by {hours} h"):
        end = deployment.deps.lease_client.extend(lease["id"], hours)
    with deployment.state.edit() as doc:
        doc[STATE_KEY]["lease"]["end"] = end
    console.print(f"lease {lease.get('name')} now ends {end}", highlight=False)


@lease_app.command("delete")
def delete(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    config: ConfigOption = None,
    profile: ProfileOption = None,
) -> None:
    """Delete the lease only (its instances go with it). `chiml down` also removes the rest."""
    from chiml.chameleon.auth import check_credentials
    from chiml.chameleon.deployment import STATE_KEY

    deployment, lease = _deployment(ctx)
    check_credentials(deployment.cfg.site)
    if not yes and not typer.confirm(
        f"Delete lease {lease.get('name')} ({lease['id']})? Its instances and their data are deleted with it.",
        default=False,
    ):
        raise typer.Abort()
    deleted = deployment.deps.lease_client.delete(lease["id"])
    with deployment.state.edit() as doc:
        doc[STATE_KEY]["lease"] = None
    console.print(f"lease {lease['id']} {'deleted' if deleted else 'was already gone'}; "
                  "run `chiml down` to remove the remaining Terraform resources", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(lease_app, name="lease")

"""`chiml lease show|extend|delete`: the Chameleon lease of this deployment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from chiml.cli.common import ConfigOption, JsonOption, ProfileOption, connect, console, print_json

lease_app = typer.Typer(help="The Chameleon lease of this deployment (chameleon profile).", no_args_is_help=True)

if TYPE_CHECKING:
    from chiml.chameleon.lease import LeaseInfo


def _as_json(info: LeaseInfo) -> dict[str, Any]:
    left = info.time_left()
    return {**info.to_json(), "hours_left": round(left.total_seconds() / 3600, 1) if left else None}


@lease_app.command("show")
def show(
    ctx: typer.Context, config: ConfigOption = None, profile: ProfileOption = None, json_out: JsonOption = False
) -> None:
    """Show the lease: id, status, end and time left (warns within 48 h of the end)."""
    platform = connect(ctx)
    info = platform.lease.show()
    data = _as_json(info)
    if json_out:
        print_json(data)
        return
    console.print(f"lease {info.name} ({info.id}) at {platform.config.chameleon.site}: {info.status}, ends "
                  f"{info.end} ({data['hours_left']} h left); floating IP {info.floating_ip or '-'}", highlight=False)
    warning = info.expiry_warning()
    if warning:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@lease_app.command("extend")
def extend(
    ctx: typer.Context,
    hours: Annotated[int, typer.Option("--hours", min=1, max=168, help="how many hours to add")] = 24,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Extend the lease (Blazar allows it within 48 h of the end, up to 7 days, if the hosts are free)."""
    info = connect(ctx).lease.extend(hours)
    if json_out:
        print_json(_as_json(info))
        return
    console.print(f"lease {info.name} now ends {info.end}", highlight=False)


@lease_app.command("delete")
def delete(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Delete the lease only (its instances go with it). `chiml down` also removes the rest."""
    lease = connect(ctx).lease
    recorded = lease.recorded()
    if not yes and not typer.confirm(
        f"Delete lease {recorded.name} ({recorded.id})? Its instances and their data are deleted with it.",
        default=False,
    ):
        raise typer.Abort()
    deleted = lease.delete()
    if json_out:
        print_json({"id": recorded.id, "name": recorded.name, "deleted": deleted})
        return
    console.print(f"lease {recorded.id} {'deleted' if deleted else 'was already gone'}; "
                  "run `chiml down` to remove the remaining Terraform resources", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(lease_app, name="lease")

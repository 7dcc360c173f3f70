"""Leases through the real python-chi code on top of a fake Blazar (its quirks included)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from chiml.chameleon.lease import LeaseClient, LeaseInfo, LeaseRequest
from chiml.config import parse_config
from chiml.errors import ChimlError, InvalidInputError, UnreachableError
from tests.chameleon.fakes import BLAZAR_DATE, FakeChameleon


def _request(**chameleon: object) -> LeaseRequest:
    return LeaseRequest.from_config(parse_config({"chameleon": chameleon}).chameleon)


def test_request_merges_groups_of_the_same_node_type() -> None:
    request = _request(cpu_agents={"count": 2, "node_type": "compute_cascadelake_r"})
    by_key = {spec.key: spec for spec in request.reservations}
    assert by_key["node_type=compute_cascadelake_r"].amount == 3
    assert by_key["node_type=compute_cascadelake_r"].groups == ("server", "cpu_agents")
    assert by_key["node_type=gpu_rtx_6000"].amount == 1
    assert request.to_json()["reservations"][-1]["type"] == "virtual:floatingip"


def test_kvm_requires_flavors() -> None:
    with pytest.raises(ChimlError, match="reserves flavors"):
        parse_config({"chameleon": {"site": "KVM@TACC"}})


def test_create_wait_describe(fake_chameleon: FakeChameleon) -> None:
    client = LeaseClient(poll_interval_s=0)
    request = _request()
    lease_id = client.create(request)
    seen: list[str] = []
    raw = client.wait_active(lease_id, timeout_s=10, on_status=seen.append)
    assert seen == ["STARTING", "ACTIVE"]
    info = client.describe(raw, request)
    sent = fake_chameleon.leases.created[0]["reservations"]
    # python-chi's own request format reached Blazar
    assert json.loads(sent[0]["resource_properties"]) == ["==", "$node_type", "compute_cascadelake_r"]
    assert sent[-1] == {"resource_type": "virtual:floatingip", "network_id": "public-net-id", "amount": 1}
    assert set(info.reservations) == {"server", "gpu_agents"}
    assert info.reservations["server"] != info.reservations["gpu_agents"]
    assert info.floating_ip == "192.5.87.10"
    assert info.time_left() is not None and timedelta(hours=23) < info.time_left() <= timedelta(hours=24)


def test_refusal_surfaces_blazars_reason_not_python_chis(fake_chameleon: FakeChameleon) -> None:
    fake_chameleon.leases.refuse_with = "Not enough hosts available"
    with pytest.raises(ChimlError) as info:
        LeaseClient(poll_interval_s=0).create(_request())
    # python-chi raises "Unable to make lease"; the user sees what Blazar said
    assert "not enough unreserved hosts" in info.value.message.lower()
    assert "Unable to make lease" not in info.value.message
    assert fake_chameleon.leases.live() == []


def test_restricted_credential_refusal_gets_the_unrestricted_hint(fake_chameleon: FakeChameleon) -> None:
    fake_chameleon.leases.refuse_with = "Trust creation failed: application credential is restricted"
    with pytest.raises(ChimlError) as info:
        LeaseClient(poll_interval_s=0).create(_request())
    assert "Unrestricted" in (info.value.hint or "")


def test_bare_500_names_the_unrestricted_box_first(fake_chameleon: FakeChameleon) -> None:
    """A refused trust reaches the client as Blazar's generic 500: the credential is the first suspect."""
    fake_chameleon.leases.refuse_with = "Internal Server Error"
    fake_chameleon.leases.refuse_code = 500
    with pytest.raises(ChimlError) as info:
        LeaseClient(poll_interval_s=0).create(_request())
    hint = info.value.hint or ""
    assert "Unrestricted" in hint and "fewer nodes" not in hint
    assert hint.index("Unrestricted") < 120


def test_error_state_without_exception_becomes_an_error(fake_chameleon: FakeChameleon) -> None:
    fake_chameleon.leases.end_in_error = True
    client = LeaseClient(poll_interval_s=0)
    lease_id = client.create(_request())
    with pytest.raises(ChimlError, match=r"went to ERROR: event start_lease failed; reservation .* missing resources"):
        client.wait_active(lease_id, timeout_s=10)


def test_timeout_names_the_status(fake_chameleon: FakeChameleon) -> None:
    fake_chameleon.leases.stay_pending = True
    ticks = iter(range(0, 1000, 10))
    client = LeaseClient(poll_interval_s=0, clock=lambda: next(ticks))
    lease_id = client.create(_request())
    with pytest.raises(ChimlError, match="still PENDING after 30 s"):
        client.wait_active(lease_id, timeout_s=30)


def test_kvm_flavor_reservations_map_to_reserved_flavors(fake_chameleon: FakeChameleon) -> None:
    request = _request(
        site="KVM@TACC", server={"flavor": "m1.xlarge"}, gpu_agents={"count": 1, "flavor": "g1.h100.pci.1"}
    )
    client = LeaseClient(poll_interval_s=0)
    raw = client.wait_active(client.create(request), timeout_s=10)
    # what Blazar answers once ACTIVE: flavor_id is the reserved flavor, not the requested one
    flavor_ids = {r["flavor_id"] for r in raw["reservations"] if r["resource_type"] == "flavor:instance"}
    assert not flavor_ids & {"f-xlarge", "f-h100"}
    info = client.describe(raw, request)
    by_id = {r["id"]: json.loads(r["resource_properties"])["name"] for r in raw["reservations"]
             if r["resource_type"] == "flavor:instance"}
    assert by_id[info.reservations["server"]] == "m1.xlarge"
    assert by_id[info.reservations["gpu_agents"]] == "g1.h100.pci.1"
    # the reserved flavor's id is the reservation's id
    assert info.flavors["server"] == info.reservations["server"]
    assert info.flavors["gpu_agents"] == info.reservations["gpu_agents"]
    assert info.flavors["server"] != info.flavors["gpu_agents"]


def test_extend_outside_the_window_is_refused_with_blazars_words(fake_chameleon: FakeChameleon) -> None:
    client = LeaseClient(poll_interval_s=0)
    lease_id = client.create(_request(lease_hours=72))
    with pytest.raises(InvalidInputError, match="within 48 hours"):  # Blazar's 400
        client.extend(lease_id, 24)


def test_keystone_or_blazar_not_answering_is_unreachable(
    fake_chameleon: FakeChameleon, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keystoneauth1.exceptions import ConnectFailure

    from tests.chameleon.fakes import _blazar_error

    def no_keystone() -> str:  # what keystoneauth raises when the site's Keystone refuses connections
        raise ConnectFailure("Unable to establish connection to https://chi.uc.chameleoncloud.org:5000/v3/auth/tokens")

    monkeypatch.setattr(fake_chameleon.session, "get_user_id", no_keystone)
    client = LeaseClient(poll_interval_s=0)
    with pytest.raises(UnreachableError, match="cannot authenticate to Keystone: Unable to establish connection"):
        client.whoami()
    lease_id = client.create(_request())

    def unavailable(_lease_id: str) -> dict:  # Blazar behind its gateway while it restarts
        raise _blazar_error("503 Service Unavailable", 503)

    monkeypatch.setattr(fake_chameleon.leases, "get", unavailable)
    with pytest.raises(UnreachableError, match="Blazar failed reading the lease: 503 Service Unavailable"):
        client.status(lease_id)


def test_extend_within_the_window(fake_chameleon: FakeChameleon) -> None:
    client = LeaseClient(poll_interval_s=0)
    lease_id = client.create(_request(lease_hours=24))
    before = fake_chameleon.leases.leases[lease_id]["end_date"]
    new_end = datetime.fromisoformat(client.extend(lease_id, 24))
    assert new_end - datetime.strptime(before, BLAZAR_DATE).replace(tzinfo=UTC) == timedelta(hours=24)


def test_delete_of_a_vanished_lease_is_not_an_error(fake_chameleon: FakeChameleon) -> None:
    client = LeaseClient(poll_interval_s=0)
    lease_id = client.create(_request())
    assert client.delete(lease_id) is True
    assert client.delete(lease_id) is False
    assert client.status(lease_id) is None


def test_expiry_warning_only_within_48_hours() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    soon = LeaseInfo(id="x", name="chiml", status="ACTIVE", end=(now + timedelta(hours=30)).isoformat())
    later = LeaseInfo(id="x", name="chiml", status="ACTIVE", end=(now + timedelta(hours=60)).isoformat())
    assert "30.0 h" in (soon.expiry_warning(now) or "")
    assert later.expiry_warning(now) is None


def test_find_by_name_never_returns_a_teammates_lease(fake_chameleon: FakeChameleon) -> None:
    client = LeaseClient(poll_interval_s=0)
    request = _request()
    mine = client.create(request)
    me = fake_chameleon.session.user_id
    assert client.whoami() == me
    assert client.find_by_name(request.name, me)["id"] == mine
    assert client.find_by_name(request.name, "someone-else") is None


def test_unique_names_differ_per_user_and_stay_valid() -> None:
    from chiml.chameleon.lease import unique_name

    a, b = unique_name("chiml", "user-a"), unique_name("chiml", "user-b")
    assert a != b and a.startswith("chiml-") and a == unique_name("chiml", "user-a")
    longest = unique_name("x" * 40, "user-a")
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,46}", longest)  # terraform's deployment validation

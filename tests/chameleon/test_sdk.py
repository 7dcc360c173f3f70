"""The SDK on the chameleon profile: a notebook's `Platform.down()` never releases a lease by accident."""

from __future__ import annotations

import pytest

from chiml import Platform
from chiml.chameleon.deployment import ChameleonDeployment, Dependencies
from chiml.chameleon.lease import LeaseClient
from chiml.errors import ChimlError
from tests.chameleon.fakes import FakeChameleon, FakeNodes


def test_platform_down_needs_release_lease_on_chameleon(fake_chameleon: FakeChameleon, fake_terraform,
                                                        credentials, fake_nodes: FakeNodes, write_config) -> None:
    platform = Platform.connect(config=write_config())
    deps = Dependencies(lease_client=LeaseClient(poll_interval_s=0), connector=fake_nodes.connector,
                        detect_admin_cidr=lambda: "203.0.113.9/32", k3s_poll_s=0)
    platform.profile.deployment = ChameleonDeployment(platform.loaded, deps)
    platform.profile.deployment.up(progress=lambda m: None)
    assert len(fake_chameleon.leases.live()) == 1

    with pytest.raises(ChimlError, match="destroys every instance and deletes the lease") as info:
        platform.down()
    assert "release_lease=True" in (info.value.hint or "")
    assert len(fake_chameleon.leases.live()) == 1 and fake_terraform.calls()[-1][0] != "destroy"

    platform.down(release_lease=True)
    assert fake_chameleon.leases.live() == []
    assert fake_terraform.calls()[-1][0] == "destroy"

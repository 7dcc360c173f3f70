"""`up`/`down` on the chameleon profile with fakes only at the outer boundaries.

Blazar/Neutron/Nova are faked under python-chi, `terraform` is a fake executable on PATH, and
the nodes answer over a fake SSH connector. Every failure path asserts that nothing is left
reserved: no live lease in the fake Blazar and no resource in the (fake) Terraform state.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from chiml.chameleon.deployment import STATE_KEY, ChameleonDeployment, Dependencies
from chiml.chameleon.lease import LeaseClient, unique_name
from chiml.config import load_config
from chiml.errors import ChimlError
from chiml.profiles import get_profile
from chiml.state import StateStore
from tests.chameleon.conftest import FakeTerraform
from tests.chameleon.fakes import FakeChameleon, FakeNodes, FakeSession, agent_labels

# what `up` names the default deployment for the fake Keystone user
NAME = unique_name("chiml", FakeSession().user_id)


@pytest.fixture
def env(fake_chameleon: FakeChameleon, fake_terraform: FakeTerraform, credentials: dict, fake_nodes: FakeNodes,
        write_config):
    """Everything a deployment needs, faked at the boundaries."""

    class Env:
        chameleon = fake_chameleon
        terraform = fake_terraform
        nodes = fake_nodes

        def __init__(self) -> None:
            self.config_path = write_config()
            self.answers: list[str] = []

        def deployment(self, confirm: bool | None = None, **overrides: object) -> ChameleonDeployment:
            if overrides:
                self.config_path = write_config(**overrides)
            loaded = load_config(self.config_path)
            deps = Dependencies(
                lease_client=LeaseClient(poll_interval_s=0),
                connector=self.nodes.connector,
                detect_admin_cidr=lambda: "203.0.113.9/32",
                confirm=(lambda question: self.answers.append(question) or bool(confirm)),
                k3s_poll_s=0,
            )
            return ChameleonDeployment(loaded, deps)

        def tf_resources(self, deployment: ChameleonDeployment) -> list:
            state = deployment.tf_dir / "terraform.tfstate"
            return json.loads(state.read_text())["resources"] if state.is_file() else []

        def assert_nothing_left(self, deployment: ChameleonDeployment) -> None:
            assert self.chameleon.leases.live() == [], "a lease is still reserved"
            assert self.tf_resources(deployment) == [], "Terraform resources are left"
            assert not StateStore(deployment.loaded.home).get(STATE_KEY), "state still records a deployment"

    return Env()


def test_up_happy_path(env) -> None:
    deployment = env.deployment()
    cluster = deployment.up(progress=lambda m: None)

    # lease: one reservation per node type plus the floating IP
    assert len(env.chameleon.leases.created) == 1
    lease = next(iter(env.chameleon.leases.leases.values()))
    assert lease["status"] == "ACTIVE"
    by_type = {r["resource_type"]: r for r in lease["reservations"]}
    assert set(by_type) == {"physical:host", "virtual:floatingip"}

    # terraform: init, then apply with the tfvars chiml wrote from the lease
    calls = env.terraform.calls()
    assert [c[0] for c in calls] == ["init", "apply", "output"]
    assert "-auto-approve" in calls[1] and "-json" in calls[1]
    tfvars = json.loads(deployment.tfvars_path.read_text())
    server_res = [r for r in lease["reservations"] if "compute_cascadelake_r" in r.get("resource_properties", "")]
    gpu_res = [r for r in lease["reservations"] if "gpu_rtx_6000" in r.get("resource_properties", "")]
    assert tfvars["server"] == {"reservation_id": server_res[0]["id"], "flavor_id": None}
    assert tfvars["agents"]["gpu"] == {"count": 1, "reservation_id": gpu_res[0]["id"], "flavor_id": None}
    assert tfvars["agents"]["cpu"] == {"count": 0, "reservation_id": None, "flavor_id": None}
    assert tfvars["floating_ip_address"] == "192.5.87.10"
    assert tfvars["admin_cidr"] == "198.51.100.7/32"
    assert tfvars["key_name"] == "my-key"

    # k3s: waited through the boot, kubeconfig points at the floating IP, 0600
    kubeconfig = yaml.safe_load(deployment.kubeconfig_path.read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://192.5.87.10:6443"
    assert kubeconfig["current-context"] == "chiml"
    assert deployment.kubeconfig_path.stat().st_mode & 0o777 == 0o600
    assert env.nodes.open_shells == 0, "SSH sessions left open"

    # the cluster description handed to the Helm layer
    assert cluster.api_endpoint == "https://192.5.87.10:6443"
    assert [n.name for n in cluster.nodes] == [f"{NAME}-server", f"{NAME}-gpu-0"]
    assert cluster.has_gpu and [n.gpu for n in cluster.nodes] == [False, True]
    assert cluster.kubernetes_version == "v1.33.2+k3s1"
    assert cluster.ingress_base_url == "http://192.5.87.10.nip.io"

    ssh_config = deployment.ssh_config_path.read_text()
    assert f"Host {NAME}-gpu-0\n    HostName 10.140.81.30\n    ProxyJump {NAME}-server" in ssh_config

    state = StateStore(deployment.loaded.home).get(STATE_KEY)
    assert state["phase"] == "ready" and state["lease"]["floating_ip"] == "192.5.87.10"


def test_up_twice_reserves_and_creates_nothing_new(env) -> None:
    env.deployment().up(progress=lambda m: None)
    resources = env.tf_resources(env.deployment())
    env.deployment().up(progress=lambda m: None)
    assert len(env.chameleon.leases.created) == 1
    assert env.tf_resources(env.deployment()) == resources


def test_detected_admin_cidr_is_used_when_unset(env) -> None:
    deployment = env.deployment(admin_cidr=None)
    deployment.up(progress=lambda m: None)
    assert json.loads(deployment.tfvars_path.read_text())["admin_cidr"] == "203.0.113.9/32"


def test_lease_refused_leaves_nothing(env) -> None:
    env.chameleon.leases.refuse_with = "Not enough hosts available"
    deployment = env.deployment()
    with pytest.raises(ChimlError, match="not enough unreserved hosts") as info:
        deployment.up(progress=lambda m: None)
    assert "nothing was left reserved" in (info.value.hint or "")
    assert env.terraform.calls() == []
    env.assert_nothing_left(deployment)


def test_lease_error_state_is_deleted(env) -> None:
    env.chameleon.leases.end_in_error = True
    deployment = env.deployment()
    with pytest.raises(ChimlError, match="went to ERROR") as info:
        deployment.up(progress=lambda m: None)
    assert f"lease {NAME} deleted" in (info.value.hint or "")
    assert len(env.chameleon.leases.deleted) == 1
    env.assert_nothing_left(deployment)


def test_lease_timeout_is_rolled_back(env) -> None:
    env.chameleon.leases.stay_pending = True
    deployment = env.deployment(lease_timeout_s=30)
    deployment.deps.lease_client.clock = iter(range(0, 10_000, 10)).__next__
    with pytest.raises(ChimlError, match="still PENDING"):
        deployment.up(progress=lambda m: None)
    env.assert_nothing_left(deployment)


def test_terraform_apply_failure_destroys_partial_resources_and_deletes_the_lease(env) -> None:
    env.terraform.set(fail={"apply": "No valid host was found. There are not enough hosts available."},
                      partial_apply=True)
    deployment = env.deployment()
    with pytest.raises(ChimlError, match="terraform apply failed: Error creating OpenStack server") as info:
        deployment.up(progress=lambda m: None)
    assert "Terraform resources destroyed" in (info.value.hint or "")
    commands = [c[0] for c in env.terraform.calls()]
    assert commands == ["init", "apply", "destroy"]
    assert "-force" not in env.terraform.calls()[-1]
    env.assert_nothing_left(deployment)


def test_rollback_that_cannot_destroy_says_exactly_what_is_left(env) -> None:
    env.terraform.set(fail={"apply": "quota exceeded", "destroy": "instance is locked"}, partial_apply=True)
    deployment = env.deployment()
    with pytest.raises(ChimlError, match="quota exceeded") as info:
        deployment.up(progress=lambda m: None)
    hint = info.value.hint or ""
    lease_id = next(iter(env.chameleon.leases.leases))
    assert "instance is locked" in hint
    assert f"lease {NAME} ({lease_id})" in hint and "Terraform resources" in hint
    assert "chiml down --yes" in hint
    # the lease is deliberately kept: deleting it under live Terraform state would orphan the rest
    assert len(env.chameleon.leases.live()) == 1


def test_k3s_never_ready_is_rolled_back(env) -> None:
    env.nodes.never_ready = True
    deployment = env.deployment(k3s_timeout_s=60)
    with pytest.raises(ChimlError, match="k3s was not ready within 60 s"):
        _with_fast_clock(deployment)
    env.assert_nothing_left(deployment)
    assert env.nodes.open_shells == 0


def test_cloud_init_failure_on_an_agent_is_reported_and_rolled_back(env) -> None:
    env.nodes.cloud_init_error_on = "gpu-0"
    deployment = env.deployment()
    with pytest.raises(ChimlError, match=rf"cloud-init failed on {NAME}-gpu-0: .*nvidia-container-toolkit"):
        deployment.up(progress=lambda m: None)
    env.assert_nothing_left(deployment)


def test_gpu_node_without_the_nvidia_runtime_fails_up(env) -> None:
    """Ready and labelled, but k3s started without the toolkit: `up` fails instead of reporting success."""
    env.nodes.toolkit_missing_on = "gpu-0"
    deployment = env.deployment()
    with pytest.raises(ChimlError, match=rf"GPU nodes cannot run GPU pods: {NAME}-gpu-0: nvidia-container-runtime "
                                         r"is not installed; .*containerd has no nvidia runtime"):
        deployment.up(progress=lambda m: None)
    # the node registered with its GPU label all along (configured before anything is installed)
    assert agent_labels(gpu=True)["chiml.io/gpu"] == "true"
    env.assert_nothing_left(deployment)
    assert env.nodes.open_shells == 0


def test_gpu_runtime_is_checked_on_each_gpu_node(env) -> None:
    env.deployment().up(progress=lambda m: None)
    gpu_ip = "10.140.81.30"
    asked = [cmd for host, cmd in env.nodes.commands if host == gpu_ip]
    assert "command -v nvidia-container-runtime" in asked
    assert "sudo cat /var/lib/rancher/k3s/agent/etc/containerd/config.toml" in asked


def test_teammates_with_the_default_name_get_their_own_lease_and_resources(env, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Two members of one project, both with deployment `chiml`: nothing is shared, adopted or deleted across."""
    alice = env.deployment()
    alice.up(progress=lambda m: None)
    (alice_lease,) = env.chameleon.leases.live()

    # Bob, in his own CHIML_HOME; his lease of an interrupted run would carry his name, but a
    # teammate's lease that happens to carry it (made by hand, say) is never adopted
    bob_id = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
    bob_name = unique_name("chiml", bob_id)
    env.chameleon.leases.create(bob_name, "now", "2099-01-01 00:00", [], [])
    monkeypatch.setenv("CHIML_HOME", str(tmp_path / "bob"))
    env.chameleon.session.user_id = bob_id
    bob = env.deployment()
    bob.up(progress=lambda m: None)
    bob_lease = StateStore(bob.loaded.home).get(STATE_KEY)["lease"]
    assert bob_lease["name"] == bob_name != alice_lease["name"]
    assert env.chameleon.leases.leases[bob_lease["id"]]["user_id"] == bob_id, "a teammate's lease was adopted"
    tfvars = json.loads(bob.tfvars_path.read_text())
    assert tfvars["deployment"] == bob_name  # security group, port, instances: all named after Bob
    outputs = StateStore(bob.loaded.home).get(STATE_KEY)["outputs"]
    assert outputs["server"]["name"] == f"{bob_name}-server"

    bob.down(yes=True, progress=lambda m: None)
    assert alice_lease["id"] in env.chameleon.leases.leases, "Bob's down deleted Alice's lease"
    assert bob_lease["id"] not in env.chameleon.leases.leases


def test_a_deployment_made_with_the_old_per_site_root_keeps_its_working_directory(env) -> None:
    """Made when terraform/baremetal was a root of its own: the one root is copied into that directory."""
    first = env.deployment()
    first.up(progress=lambda m: None)
    old = first.tf_dir.parent / "baremetal"
    first.tf_dir.rename(old)
    with StateStore(first.loaded.home).edit() as doc:
        doc[STATE_KEY] = {**doc[STATE_KEY], "root": "baremetal"}
    again = env.deployment()
    assert again.tf_dir == old
    again.up(progress=lambda m: None)  # converges in place: nothing new
    assert env.terraform.calls()[-1][0] == "output" and (old / "main.tf").is_file()
    assert not (old.parent / "cluster").exists()
    again.down(yes=True, progress=lambda m: None)
    env.assert_nothing_left(again)


# Where the layout before the one node module (modules k3s-server and k3s-agents, one call per
# agent group) kept the resources of a deployment that today's layout puts at the left.
EARLIER_ADDRESSES = {
    "module.server.openstack_networking_port_v2.server[0]": "module.server.openstack_networking_port_v2.server",
    "module.server.openstack_compute_instance_v2.this[0]": "module.server.openstack_compute_instance_v2.server",
    "module.server.openstack_networking_floatingip_associate_v2.server[0]":
        "module.server.openstack_networking_floatingip_associate_v2.server",
    'module.agents["gpu"].openstack_compute_instance_v2.this[0]':
        "module.gpu_agents.openstack_compute_instance_v2.agent[0]",
}


def test_a_deployment_of_the_earlier_layout_keeps_its_nodes(env) -> None:
    """Its working directory has the modules beside the root and the earlier addresses in its state:
    `up` refreshes the configuration, Terraform's moved blocks carry every node over, nothing is rebuilt."""
    first = env.deployment()
    first.up(progress=lambda m: None)
    ids = {r["addr"]: r["instances"][0]["attributes"]["id"] for r in env.tf_resources(first)}
    assert set(EARLIER_ADDRESSES) <= set(ids)
    old = first.tf_dir.parent / "baremetal"
    first.tf_dir.rename(old)
    (old / "modules").rename(old.parent / "modules")
    state = json.loads((old / "terraform.tfstate").read_text())
    for res in state["resources"]:
        res["addr"] = EARLIER_ADDRESSES.get(res["addr"], res["addr"])
    (old / "terraform.tfstate").write_text(json.dumps(state))
    with StateStore(first.loaded.home).edit() as doc:
        doc[STATE_KEY] = {**doc[STATE_KEY], "root": "baremetal"}

    again = env.deployment()
    again.up(progress=lambda m: None)
    assert again.tf_dir == old and not (old.parent / "modules").exists()
    after = {r["addr"]: r["instances"][0]["attributes"]["id"] for r in env.tf_resources(again)}
    assert after == ids, "a node was rebuilt or lost"
    again.down(yes=True, progress=lambda m: None)
    env.assert_nothing_left(again)


def test_a_home_made_with_other_credentials_is_refused(env) -> None:
    env.deployment().up(progress=lambda m: None)
    env.chameleon.session.user_id = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
    with pytest.raises(ChimlError, match=f"holds deployment {NAME}, made with other credentials"):
        env.deployment().up(progress=lambda m: None)
    assert len(env.chameleon.leases.live()) == 1


def test_resumed_run_keeps_what_an_earlier_run_made(env) -> None:
    env.terraform.set(fail={"init": "could not connect to registry.terraform.io"})
    deployment = env.deployment()
    with pytest.raises(ChimlError, match="terraform init failed"):
        deployment.up(progress=lambda m: None)
    env.assert_nothing_left(deployment)  # that run's lease was rolled back

    env.terraform.set()
    deployment = env.deployment()
    deployment.up(progress=lambda m: None)
    lease_id = next(iter(env.chameleon.leases.leases))

    # a later run fails: what the earlier run made is kept and named, with the way out
    env.nodes.never_ready = True
    with pytest.raises(ChimlError) as info:
        _with_fast_clock(env.deployment())
    hint = info.value.hint or ""
    kept = f"Terraform resources (state in {deployment.tf_dir}); lease {NAME} ({lease_id})"
    assert f"kept from an earlier run: {kept}" in hint
    assert "`chiml down --yes` removes" in hint
    assert len(env.chameleon.leases.created) == 2
    assert [lease["id"] for lease in env.chameleon.leases.live()] == [lease_id]


def test_interrupted_wait_is_resumed_without_a_second_lease(env) -> None:
    env.chameleon.leases.stay_pending = True
    deployment = env.deployment()

    def interrupt(status: str) -> None:
        raise KeyboardInterrupt

    original = deployment.deps.lease_client.wait_active
    deployment.deps.lease_client.wait_active = lambda lid, timeout_s, on_status=None: original(
        lid, timeout_s, interrupt
    )
    with pytest.raises(ChimlError, match="interrupted") as info:
        deployment.up(progress=lambda m: None)
    assert f"lease {NAME}" in (info.value.hint or "") and "`chiml up` continues" in (info.value.hint or "")
    env.chameleon.leases.stay_pending = False
    env.deployment().up(progress=lambda m: None)
    assert len(env.chameleon.leases.created) == 1


def test_down_asks_and_refusal_destroys_nothing(env) -> None:
    env.deployment().up(progress=lambda m: None)
    deployment = env.deployment(confirm=False)
    with pytest.raises(ChimlError, match="aborted: nothing was destroyed"):
        deployment.down(yes=False, progress=lambda m: None)
    assert env.answers == ["Destroy it?"]
    assert len(env.chameleon.leases.live()) == 1 and env.tf_resources(deployment)


def test_down_destroys_then_deletes_the_lease(env) -> None:
    env.deployment().up(progress=lambda m: None)
    deployment = env.deployment(confirm=True)
    loss = deployment.describe_loss()
    assert f"{NAME}-server, {NAME}-gpu-0" in loss and "cannot be undone" in loss
    assert deployment.down(yes=False, progress=lambda m: None) is True
    destroy = env.terraform.calls()[-1]
    assert destroy[:2] == ["destroy", "-auto-approve"] and "-force" not in destroy
    env.assert_nothing_left(deployment)
    assert not deployment.dir.exists()
    assert deployment.down(yes=True, progress=lambda m: None) is False


def test_down_keeps_the_lease_when_destroy_fails(env) -> None:
    env.deployment().up(progress=lambda m: None)
    env.terraform.set(fail={"destroy": "port still in use"})
    deployment = env.deployment()
    with pytest.raises(ChimlError, match="port still in use") as info:
        deployment.down(yes=True, progress=lambda m: None)
    assert "re-run `chiml down`" in (info.value.hint or "")
    assert len(env.chameleon.leases.live()) == 1
    env.terraform.set()
    env.deployment().down(yes=True, progress=lambda m: None)
    env.assert_nothing_left(deployment)


def test_down_after_the_lease_ended_forgets_the_floating_ip_then_destroys(env) -> None:
    env.deployment().up(progress=lambda m: None)
    # the lease ran out: Blazar deleted the instances and the reserved floating IP
    env.chameleon.leases.end(next(iter(env.chameleon.leases.leases)))
    env.terraform.set(instances_gone=True, lease_ended=True)
    deployment = env.deployment()
    deployment.down(yes=True, progress=lambda m: None)
    calls = env.terraform.calls()
    forgotten = [c for c in calls if c[:2] == ["state", "rm"]]
    assert forgotten == [["state", "rm", "module.server.openstack_networking_floatingip_associate_v2.server[0]"]]
    assert calls.index(forgotten[0]) < calls.index(calls[-1]) and calls[-1][0] == "destroy"
    assert "-refresh=false" in calls[-1]
    assert env.tf_resources(deployment) == [] and not deployment.dir.exists()


def test_fake_terraform_cannot_destroy_the_association_once_blazar_deleted_the_ip(env) -> None:
    """The failure `down` avoids: destroy alone stops on the association's 404 and keeps the rest."""
    deployment = env.deployment()
    deployment.up(progress=lambda m: None)
    env.terraform.set(lease_ended=True)
    with pytest.raises(ChimlError, match=r"Error disassociating .*Resource not found"):
        deployment._terraform().destroy(deployment.tfvars_path, refresh=False)
    left = {res["type"] for res in env.tf_resources(deployment)}
    assert "openstack_networking_floatingip_associate_v2" in left


def test_fake_terraform_rejects_force_like_the_real_one(env, tmp_path: Path) -> None:
    """The regression python-terraform's destroy() would hit, reproduced by the fake."""
    import subprocess

    result = subprocess.run(["terraform", "destroy", "-force"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert "flag provided but not defined: -force" in result.stderr


def test_up_refuses_without_keypair_or_credentials(env, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ChimlError, match="key_name is not set"):
        env.deployment(key_name=None).up(progress=lambda m: None)
    monkeypatch.delenv("OS_AUTH_URL")
    with pytest.raises(ChimlError, match="OS_AUTH_URL is not set"):
        env.deployment(key_name="my-key").up(progress=lambda m: None)
    assert env.chameleon.leases.created == [] and env.terraform.calls() == []


def test_profile_status_and_smoke_args(env) -> None:
    deployment = env.deployment()
    deployment.up(progress=lambda m: None)
    probed: list[tuple[str, int]] = []

    def refused(host: str, port: int) -> None:  # the floating IP, probed without leaving this machine
        probed.append((host, port))
        raise ConnectionRefusedError(111, "Connection refused")

    deployment.deps.tcp_connect = refused
    profile = get_profile(deployment.loaded)
    profile.deployment = deployment
    statuses = {s.name: s for s in profile.status()}
    assert statuses["lease"].healthy and "ACTIVE" in statuses["lease"].detail
    # an unreachable API is reported, not raised
    assert statuses["k3s"].url == "https://192.5.87.10:6443"
    assert probed == [("192.5.87.10", 6443)]
    assert not statuses["k3s"].healthy and "API unreachable (ConnectionRefusedError)" in statuses["k3s"].detail
    args, smoke_env = profile.smoke_args()
    assert args[0].endswith("smoke_tests/nodes")
    assert f"--hosts=ssh://{NAME}-server,ssh://{NAME}-gpu-0" in args
    assert json.loads(smoke_env["CHIML_SMOKE_NODES"])[1] == {"name": f"{NAME}-gpu-0", "role": "agent", "gpu": True}
    with pytest.raises(ChimlError):  # the Helm layer has recorded no URLs yet
        profile.tracking_uri()
    # once the Helm layer recorded its install, status also asks the cluster; unreachable here,
    # which is reported as an unhealthy entry, never raised
    # (the kubeconfig is pointed at a closed loopback port: no test connects off this machine)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    kubeconfig = yaml.safe_load(deployment.kubeconfig_path.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{closed_port}"
    deployment.kubeconfig_path.write_text(yaml.safe_dump(kubeconfig))
    StateStore(deployment.loaded.home).set("kubernetes", {"namespace": "chiml", "kubeconfig": str(
        deployment.kubeconfig_path), "releases": {}})
    names = [s.name for s in profile.status()]
    assert names[:2] == ["lease", "k3s"] and len(names) > 2


def _with_fast_clock(deployment: ChameleonDeployment) -> None:
    """Run `up` with the k3s wait's clock advancing 30 s per poll."""
    import chiml.chameleon.k3s as k3s

    ticks = iter(range(0, 100_000, 30))
    original = k3s.wait_for_nodes

    def fast(*args, **kwargs):
        kwargs["clock"] = lambda: next(ticks)
        return original(*args, **kwargs)

    import chiml.chameleon.deployment as module

    module.wait_for_nodes = fast
    try:
        deployment.up(progress=lambda m: None)
    finally:
        module.wait_for_nodes = original

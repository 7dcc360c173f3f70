"""Fakes for the outermost boundaries: Blazar/Neutron/Nova behind python-chi, and the nodes' SSH.

The Blazar fake answers at python-chi's client boundary (``chi.lease.blazar()``), so python-chi's
own code runs on top of it with its real quirks: ``Lease.submit`` turns a Blazar error into a
logged message plus a generic ``ResourceError("Unable to make lease")``, and a lease may end in
ERROR without any exception. Its JSON shapes follow Blazar's API (dates as
``%Y-%m-%dT%H:%M:%S.%f``, ``created_at`` as ``%Y-%m-%d %H:%M:%S``, reservations with
``missing_resources``/``resources_changed``, events with their status).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from blazarclient.exception import BlazarClientException

BLAZAR_DATE = "%Y-%m-%dT%H:%M:%S.%f"


def _blazar_error(message: str, code: int) -> BlazarClientException:
    return BlazarClientException(message, code=code)


@dataclass
class FakeLeases:
    """``blazarclient.v1.leases.LeaseManager`` as seen from python-chi."""

    # behaviour switches
    refuse_with: str | None = None  # create() raises this Blazar message (HTTP refuse_code)
    refuse_code: int = 409
    end_in_error: bool = False  # the lease goes to ERROR after STARTING, no exception anywhere
    stay_pending: bool = False  # never leaves PENDING (start time not reached)
    delete_fails: str | None = None
    leases: dict[str, dict[str, Any]] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    fip_reservations: dict[str, str] = field(default_factory=dict)  # reservation id -> address
    nova_flavors: dict[str, Any] = field(default_factory=dict)  # flavor id -> flavor (Nova's public ones)
    session: Any = None  # the caller (FakeSession): Blazar records the lease's user and project

    def create(self, name, start, end, reservations, events, before_end=None):
        if self.refuse_with:
            raise _blazar_error(self.refuse_with, self.refuse_code)
        now = datetime.now(UTC).replace(tzinfo=None)
        start_dt = now if start == "now" else datetime.strptime(start, "%Y-%m-%d %H:%M")
        end_dt = datetime.strptime(end, "%Y-%m-%d %H:%M")
        lease_id = str(uuid.uuid4())
        stored = []
        for reservation in reservations:
            item = dict(reservation, id=str(uuid.uuid4()), lease_id=lease_id, status="pending",
                        missing_resources=False, resources_changed=False)
            if reservation["resource_type"] == "flavor:instance":
                # Blazar's flavor plugin: the requested flavor is kept only as its JSON in
                # resource_properties, flavor_id becomes the private reserved flavor (id = reservation id)
                source = self.nova_flavors[reservation["flavor_id"]]
                item["resource_properties"] = json.dumps({"id": source.id, "name": source.name, "vcpus": 16,
                                                          "ram": 65536, "disk": 40, "extra_specs": {}})
                item["flavor_id"] = item["id"]
            elif reservation["resource_type"] == "virtual:floatingip":
                item["required_floatingips"] = []
                self.fip_reservations[item["id"]] = f"192.5.87.{10 + len(self.fip_reservations)}"
            stored.append(item)
        lease = {
            "id": lease_id, "name": name, "status": "PENDING", "degraded": False,
            "user_id": self.session.user_id, "project_id": self.session.project_id,
            "start_date": start_dt.strftime(BLAZAR_DATE), "end_date": end_dt.strftime(BLAZAR_DATE),
            "created_at": now.strftime("%Y-%m-%d %H:%M:%S"),
            "reservations": stored,
            "events": [{"event_type": "start_lease", "status": "UNDONE"},
                       {"event_type": "end_lease", "status": "UNDONE"}],
        }
        self.leases[lease_id] = lease
        self.created.append({"name": name, "reservations": reservations})
        return json.loads(json.dumps(lease))

    def get(self, lease_id):
        lease = self.leases.get(lease_id)
        if lease is None:
            raise _blazar_error(f"Lease {lease_id} could not be found.", 404)
        self.polls[lease_id] = self.polls.get(lease_id, 0) + 1
        if lease["status"] in ("PENDING", "STARTING") and not self.stay_pending:
            # PENDING -> STARTING -> ACTIVE (or ERROR) over successive polls, like the real thing
            if lease["status"] == "PENDING":
                lease["status"] = "STARTING"
            elif self.end_in_error:
                lease["status"] = "ERROR"
                lease["events"][0]["status"] = "ERROR"
                lease["reservations"][0]["missing_resources"] = True
                lease["reservations"][0]["status"] = "error"
            else:
                lease["status"] = "ACTIVE"
                lease["events"][0]["status"] = "DONE"
                for reservation in lease["reservations"]:
                    reservation["status"] = "active"
        return json.loads(json.dumps(lease))

    def list(self):
        return [json.loads(json.dumps(lease)) for lease in self.leases.values()]

    def delete(self, lease_id):
        if self.delete_fails:
            raise _blazar_error(self.delete_fails, 500)
        if lease_id not in self.leases:
            raise _blazar_error(f"Lease {lease_id} could not be found.", 404)
        del self.leases[lease_id]
        self.deleted.append(lease_id)

    def update(self, lease_id, name=None, prolong_for=None, **kwargs):
        lease = self.get(lease_id)
        end = datetime.strptime(lease["end_date"], BLAZAR_DATE).replace(tzinfo=UTC)
        if end - datetime.now(UTC) > timedelta(hours=48):
            raise _blazar_error("Lease can only be extended within 48 hours of its end date", 400)
        hours = int(prolong_for.rstrip("h"))
        new_end = (end + timedelta(hours=hours)).replace(tzinfo=None)
        self.leases[lease_id]["end_date"] = new_end.strftime(BLAZAR_DATE)
        return json.loads(json.dumps(self.leases[lease_id]))

    def end(self, lease_id: str) -> None:
        """The lease ran out: Blazar deletes its instances and its reserved floating IPs."""
        lease = self.leases[lease_id]
        lease["status"] = "TERMINATED"
        lease["events"][1]["status"] = "DONE"
        for reservation in lease["reservations"]:
            reservation["status"] = "deleted"
            self.fip_reservations.pop(reservation["id"], None)

    def live(self) -> list[dict[str, Any]]:
        """Leases still holding resources (what must be empty after every failure)."""
        return [lease for lease in self.leases.values() if lease["status"] not in ("TERMINATED", "DELETED")]


class FakeBlazarClient:
    def __init__(self, leases: FakeLeases) -> None:
        self.lease = leases


@dataclass
class FakeFlavor:
    id: str
    name: str


@dataclass
class FakeSession:
    """The Keystone session python-chi hands out (``chi.context.session()``): who is calling."""

    user_id: str = "3f9a1c2e5b7d4e6f8a0b1c2d3e4f5a6b"
    project_id: str = "p1"

    def get_user_id(self) -> str:
        return self.user_id

    def get_project_id(self) -> str:
        return self.project_id


class FakeChameleon:
    """Installs the fakes at python-chi's OpenStack boundary (see ``install``)."""

    def __init__(self) -> None:
        self.session = FakeSession()
        self.leases = FakeLeases(session=self.session)
        self.flavors = {"m1.xlarge": FakeFlavor("f-xlarge", "m1.xlarge"),
                        "g1.h100.pci.1": FakeFlavor("f-h100", "g1.h100.pci.1")}
        self.leases.nova_flavors = {flavor.id: flavor for flavor in self.flavors.values()}

    def install(self, monkeypatch: Any) -> None:
        import chi.lease
        import chi.server

        client = FakeBlazarClient(self.leases)
        import chi.context

        monkeypatch.setattr(chi.context, "session", lambda: self.session)
        monkeypatch.setattr(chi.lease, "blazar", lambda *a, **k: client)
        monkeypatch.setattr(chi.lease, "get_network_id", lambda name: "public-net-id" if name == "public" else None)
        monkeypatch.setattr(chi.lease, "list_floating_ips", self._list_floating_ips)
        monkeypatch.setattr(chi.server, "get_flavor", self._get_flavor)
        monkeypatch.setattr(chi.server, "list_flavors", self._list_flavors)

    def _list_floating_ips(self) -> list[dict[str, Any]]:
        # Neutron tags a reserved floating IP with its Blazar reservation.
        return [{"floating_ip_address": address, "tags": ["blazar", f"reservation:{rid}"]}
                for rid, address in self.leases.fip_reservations.items()]

    def _get_flavor(self, ref: str) -> FakeFlavor:
        if ref not in self.flavors:
            raise RuntimeError(f"No Flavor found for {ref}")
        return self.flavors[ref]

    def _list_flavors(self, reservable=None, gpu=None, reservation_id=None) -> list[FakeFlavor]:
        # Blazar creates one private flavor per flavor reservation: id = reservation id, named after it.
        reserved = [r["id"] for lease in self.leases.leases.values() for r in lease["reservations"]
                    if r["resource_type"] == "flavor:instance"]
        return [FakeFlavor(rid, f"reservation:{rid}") for rid in reserved if rid == reservation_id]


K3S_KUBECONFIG = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTi0tLS0t
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: LS0tLS1CRUdJTi0tLS0t
    client-key-data: LS0tLS1CRUdJTi0tLS0t
"""


TERRAFORM = Path(__file__).resolve().parents[2] / "terraform"


def _node_labels(call: str, gpu: bool) -> dict[str, str]:
    """The labels a node of module call ``call`` registers with, read from terraform/: the role the
    root's call gives terraform/modules/k3s-node, and that module's ``labels`` (the role label,
    then, on agents, the GPU or non-GPU labels of ``local.gpu_labels``)."""
    import hcl2

    with (TERRAFORM / "main.tf").open(encoding="utf-8") as handle:
        calls = {n.strip('"'): body for block in hcl2.load(handle)["module"] for n, body in block.items()}
    role = calls[call]["role"].strip('"')
    text = (TERRAFORM / "modules" / "k3s-node" / "main.tf").read_text(encoding="utf-8")
    branches = re.search(r"gpu_labels\s*=\s*var\.gpu \? \{(.*?)\} : \{(.*?)\}\n", text)
    merged = re.search(r'labels\s*=\s*merge\(\{\s*"chiml\.io/role"\s*=\s*var\.role\s*\},\s*'
                       r"local\.is_server \? \{\} : local\.gpu_labels,", text)
    assert branches and merged, "k3s-node/main.tf no longer defines gpu_labels / labels as expected"
    labels = {"chiml.io/role": role}
    if role != "server":
        labels.update(re.findall(r'"([^"]+)"\s*=\s*"([^"]*)"', branches.group(1 if gpu else 2)))
    return labels


def agent_labels(gpu: bool) -> dict[str, str]:
    """The labels an agent registers with (terraform/main.tf's `agents` call of k3s-node)."""
    return _node_labels("agents", gpu)


def server_labels() -> dict[str, str]:
    """The labels the server registers with (terraform/main.tf's `server` call of k3s-node)."""
    return _node_labels("server", gpu=False)


def containerd_config(nvidia: bool) -> str:
    """What k3s v1.33 writes to its containerd config (abridged), with the nvidia runtime when found."""
    text = ('version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]\n'
            '  runtime_type = "io.containerd.runc.v2"\n')
    if nvidia:
        text += ('[plugins."io.containerd.cri.v1.runtime".containerd.runtimes."nvidia"]\n'
                 '  runtime_type = "io.containerd.runc.v2"\n'
                 '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes."nvidia".options]\n'
                 '  BinaryName = "/usr/bin/nvidia-container-runtime"\n')
    return text


@dataclass
class FakeNodes:
    """The booted machines, reached over SSH: the server answers kubectl, every node cloud-init.

    The machines are those the (fake) Terraform created: names and addresses come from the
    outputs in the deployment's Terraform state (found beside the SSH target's known_hosts), and
    nodes register with the labels terraform/modules/k3s-node gives them.
    """

    unreachable_polls: int = 1  # SSH refused this many times first (bare metal booting)
    not_ready_polls: int = 1  # then this many answers with nodes still NotReady
    cloud_init_error_on: str | None = None  # node (name or suffix, e.g. "gpu-0") whose cloud-init fails
    toolkit_missing_on: str | None = None  # GPU node whose toolkit failed: k3s started without nvidia
    never_ready: bool = False
    connects: int = 0
    commands: list[tuple[str | None, str]] = field(default_factory=list)
    open_shells: int = 0
    target: Any = None

    def connector(self, target: Any) -> FakeNodes:
        self.target = target
        return self

    def _outputs(self) -> dict[str, Any]:
        states = sorted((Path(self.target.known_hosts).parent / "terraform").glob("*/terraform.tfstate"))
        assert states, "no Terraform state: the nodes exist only once Terraform created them"
        outputs = json.loads(states[0].read_text()).get("outputs") or {}
        return {key: value["value"] for key, value in outputs.items()}

    @property
    def expected(self) -> list[str]:
        outputs = self._outputs()
        return [outputs["server"]["name"], *(agent["name"] for agent in outputs["agents"])]

    @property
    def names(self) -> dict[str | None, str]:
        outputs = self._outputs()
        return {None: outputs["server"]["name"], **{a["private_ip"]: a["name"] for a in outputs["agents"]}}

    def gpu(self, name: str) -> bool:
        return any(a["name"] == name and a["gpu"] for a in self._outputs()["agents"])

    @staticmethod
    def matches(name: str, pattern: str | None) -> bool:
        return pattern is not None and (name == pattern or name.endswith(f"-{pattern}"))

    def connect(self, host: str | None = None) -> _FakeShell:
        self.connects += 1
        if host is None and self.connects <= self.unreachable_polls:
            raise ConnectionRefusedError(111, "Connection refused")
        self.open_shells += 1
        return _FakeShell(self, host)

    def nodes_json(self) -> dict[str, Any]:
        kubectl_calls = sum(1 for _, cmd in self.commands if "get nodes" in cmd)
        ready = not self.never_ready and kubectl_calls > self.not_ready_polls
        items = []
        server = self.names[None]
        for name in self.expected:
            if self.matches(name, self.cloud_init_error_on):
                continue
            labels = {"kubernetes.io/hostname": name}
            labels.update(server_labels() if name == server else agent_labels(self.gpu(name)))
            items.append({
                "metadata": {"name": name, "labels": labels},
                "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                           "nodeInfo": {"kubeletVersion": "v1.33.2+k3s1"}},
            })
        return {"apiVersion": "v1", "kind": "List", "items": items}


class _FakeShell:
    def __init__(self, nodes: FakeNodes, host: str | None) -> None:
        self.nodes = nodes
        self.host = host

    def run(self, command: str, timeout: float = 120.0) -> tuple[int, str, str]:
        self.nodes.commands.append((self.host, command))
        name = self.nodes.names.get(self.host, "?")
        toolkit = self.nodes.gpu(name) and not self.nodes.matches(name, self.nodes.toolkit_missing_on)
        if "get nodes" in command:
            return 0, json.dumps(self.nodes.nodes_json()), ""
        if command == "command -v nvidia-container-runtime":
            return (0, "/usr/bin/nvidia-container-runtime\n", "") if toolkit else (1, "", "")
        if command == "sudo cat /var/lib/rancher/k3s/agent/etc/containerd/config.toml":
            return 0, containerd_config(nvidia=toolkit), ""
        if command.startswith("cloud-init status"):
            if self.nodes.matches(name, self.nodes.cloud_init_error_on):
                return 0, json.dumps({"status": "error", "errors": ["('scripts_user', RuntimeError('runparts: "
                                                                        "1 failed'))"]}), ""
            return 0, json.dumps({"status": "running", "errors": []}), ""
        if "cloud-init-output.log" in command:
            return 0, "E: Unable to locate package nvidia-container-toolkit\n", ""
        if command == "sudo cat /etc/rancher/k3s/k3s.yaml":
            return 0, K3S_KUBECONFIG, ""
        return 127, "", f"sh: 1: {command.split()[0]}: not found"

    def close(self) -> None:
        self.nodes.open_shells -= 1

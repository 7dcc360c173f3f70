"""`up` and `down` on Chameleon: lease -> Terraform -> k3s -> kubeconfig -> cluster description.

Resumable and idempotent: every step records what it made in state (key ``chameleon``) *before*
waiting on it, so a re-run after a failure or Ctrl-C continues where it stopped and never
reserves or creates anything twice. A failure rolls back what *this run* created (newest first:
Terraform resources, then the lease); whatever existed before the run is kept and named in the
error together with the command that removes it.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chiml.chameleon.auth import check_credentials
from chiml.chameleon.k3s import check_gpu_runtimes, describe_cluster, fetch_kubeconfig, wait_for_nodes
from chiml.chameleon.lease import LeaseClient, LeaseInfo, LeaseRequest, unique_name
from chiml.chameleon.publicip import detect_admin_cidr
from chiml.chameleon.ssh import Connector, ParamikoConnector, SSHTarget, render_ssh_config
from chiml.chameleon.terraform import Terraform
from chiml.chameleon.tfvars import WORKDIR, build_tfvars, terraform_source_dir, write_tfvars
from chiml.cluster import ClusterDescription
from chiml.config import LoadedConfig
from chiml.errors import AlreadyExistsError, ChimlError, InvalidInputError, NotFoundError
from chiml.plan import PlanSection
from chiml.progress import Confirm, Progress, silent
from chiml.state import StateStore

STATE_KEY = "chameleon"


def tcp_connect(host: str, port: int, timeout_s: float = 3.0) -> None:
    """Open and close a TCP connection; raises OSError when nothing answers."""
    with socket.create_connection((host, port), timeout=timeout_s):
        pass


@dataclass
class Dependencies:
    """The outer boundaries, injectable so tests can stand fakes in for Chameleon and the nodes."""

    lease_client: LeaseClient = field(default_factory=LeaseClient)
    terraform_binary: str | None = None
    connector: Callable[[SSHTarget], Connector] = ParamikoConnector
    detect_admin_cidr: Callable[[], str] = detect_admin_cidr
    environ: dict[str, str] | None = None  # None: os.environ
    confirm: Callable[[str], bool] | None = None  # None: ask on the terminal
    k3s_poll_s: float = 20.0
    tcp_connect: Callable[[str, int], None] = tcp_connect  # `status`'s reachability probe of the API


class ChameleonDeployment:
    """One deployment (one lease, one Terraform state, one k3s cluster) of a CHIML_HOME."""

    def __init__(self, loaded: LoadedConfig, deps: Dependencies | None = None) -> None:
        self.loaded = loaded
        self.cfg = loaded.config.chameleon
        self.deps = deps or Dependencies()
        self.state = StateStore(loaded.home)
        self.dir = loaded.home / "chameleon"
        # Deployments made when bare metal and KVM had separate roots keep their working directory
        # and state (recorded as "root"); the root module's moved blocks carry their resources over.
        recorded = (self.state.get(STATE_KEY) or {}).get("root") or WORKDIR
        self.workdir_name = recorded if (self.dir / "terraform" / recorded).is_dir() else WORKDIR
        self.tf_dir = self.dir / "terraform" / self.workdir_name
        self.tfvars_path = self.tf_dir / "chiml.auto.tfvars.json"
        self.kubeconfig_path = self.dir / "kubeconfig"
        self.ssh_config_path = self.dir / "ssh_config"
        self.known_hosts = self.dir / "known_hosts"

    # ------------------------------------------------------------------ state helpers
    def _st(self) -> dict[str, Any]:
        return dict(self.state.get(STATE_KEY) or {})

    def _update(self, **values: Any) -> None:
        with self.state.edit() as doc:
            current = dict(doc.get(STATE_KEY) or {})
            current.update(values)
            doc[STATE_KEY] = current

    @property
    def lease(self) -> DeploymentLease:
        """The deployment's lease (show, extend, delete)."""
        return DeploymentLease(self)

    def _terraform(self) -> Terraform:
        return Terraform(self.tf_dir, binary=self.deps.terraform_binary)

    # ------------------------------------------------------------------ plan (dry run)
    def plan(self) -> dict[str, Any]:
        """What `up` would do, computed without touching the network."""
        # The per-user suffix needs Keystone: the dry run shows where it goes (or the recorded name).
        name = self._st().get("name") or f"{self.cfg.deployment}-<user>"
        request = LeaseRequest.from_config(self.cfg, name)
        admin = self.cfg.admin_cidr or "<public IPv4 of this machine>/32 (detected by `up`)"
        tfvars = build_tfvars(self.cfg, admin, lease=None, name=name)
        gpu_nodes = [f"{name}-gpu-{i}" for i in range(self.cfg.gpu_agents.count)]
        nodes = [f"{name}-server", *(f"{name}-cpu-{i}" for i in range(self.cfg.cpu_agents.count)), *gpu_nodes]
        steps = [
            f"check OS_* credentials for {self.cfg.site}, terraform, keypair {self.cfg.key_name or '<unset>'} "
            f"and {self.cfg.ssh_private_key}",
            f"lease: reserve {', '.join(f'{s.amount} x {s.key}' for s in request.reservations)} + 1 floating IP "
            f"for {self.cfg.lease_hours} h as '{request.name}'; wait up to {self.cfg.lease_timeout_s} s for ACTIVE",
            f"terraform: init + apply terraform/ (the root module) in {self.tf_dir} with the tfvars below",
            f"k3s {self.cfg.k3s_version}: wait up to {self.cfg.k3s_timeout_s} s for nodes "
            f"{', '.join(nodes)} to be Ready",
            f"kubeconfig: fetch over SSH to {self.kubeconfig_path} (server = https://<floating IP>:6443)",
        ]
        return {"lease": request.to_json(), "terraform_root": "terraform/", "tfvars": tfvars,
                "nodes": nodes, "gpu_nodes": gpu_nodes, "steps": steps, "blockers": self._blockers()}

    def _blockers(self) -> list[str]:
        """What would stop `up` at its first step, found without the network."""
        problems = []
        if not self.cfg.key_name:
            problems.append("chameleon.key_name is not set (an existing keypair of the site)")
        if not Path(self.cfg.ssh_private_key).expanduser().is_file():
            problems.append(f"SSH private key {self.cfg.ssh_private_key} not found (chameleon.ssh_private_key)")
        try:
            check_credentials(self.cfg.site, self.deps.environ)
        except ChimlError as err:
            problems.append(err.message + " - source the site's application-credential openrc")
        if not shutil.which("terraform") and not self.deps.terraform_binary:
            problems.append("terraform is not on PATH (`make tools`)")
        return problems

    # ------------------------------------------------------------------ up
    def _preflight(self) -> str:
        if not self.cfg.key_name:
            raise InvalidInputError(
                "chameleon.key_name is not set", hint="name an existing Chameleon keypair of this site",
            )
        key = Path(self.cfg.ssh_private_key).expanduser()
        if not key.is_file():
            raise InvalidInputError(f"SSH private key {key} not found", hint="set chameleon.ssh_private_key")
        check_credentials(self.cfg.site, self.deps.environ)
        self._terraform()  # raises when terraform is missing
        st = self._st()
        if st.get("deployment") not in (None, self.cfg.deployment) or st.get("site") not in (None, self.cfg.site):
            raise AlreadyExistsError(
                f"this CHIML_HOME already holds deployment {st.get('deployment')} at {st.get('site')}",
                hint="`chiml down` it first, or use another CHIML_HOME",
            )
        return self.cfg.admin_cidr or self.deps.detect_admin_cidr()

    def up(self, progress: Progress = silent) -> ClusterDescription:
        say = progress
        admin_cidr = self._preflight()
        user_id = self.deps.lease_client.whoami()
        name = unique_name(self.cfg.deployment, user_id)
        st = self._st()
        recorded = st.get("name")
        if recorded is None and st.get("lease"):
            name = recorded = st.get("deployment") or self.cfg.deployment  # recorded before names were per user
        if recorded not in (None, name):
            raise AlreadyExistsError(f"this CHIML_HOME holds deployment {recorded}, made with other credentials",
                                     hint="source the openrc of the user who made it, or use another CHIML_HOME")
        self._update(deployment=self.cfg.deployment, name=name, user_id=user_id, site=self.cfg.site,
                     root=self.workdir_name)
        created: list[str] = []
        try:
            lease = self._ensure_lease(created, say)
            warning = lease.expiry_warning()
            if warning:
                say(f"warning: {warning}")
            outputs = self._apply(lease, admin_cidr, created, say)
            cluster = self._k3s(outputs, say)
        except KeyboardInterrupt:
            raise ChimlError("interrupted", hint=self._leftovers_hint()) from None
        except Exception as err:
            message = err.message if isinstance(err, ChimlError) else f"{err.__class__.__name__}: {err}"
            raise ChimlError(message, hint=self._rollback(created, say)) from None
        self._update(phase="ready", cluster=cluster.to_json())
        return cluster

    def _ensure_lease(self, created: list[str], say: Callable[[str], None]) -> LeaseInfo:
        client = self.deps.lease_client
        st = self._st()
        request = LeaseRequest.from_config(self.cfg, st["name"])
        lease_id = (st.get("lease") or {}).get("id")
        if lease_id:
            found = client.status(lease_id)
            if found is None or found[0] in ("TERMINATED", "DELETED", "ERROR"):
                if self._terraform().has_resources():
                    raise ChimlError(
                        f"lease {lease_id} is {found[0] if found else 'gone'} but Terraform still has resources",
                        hint="run `chiml down` to clean up, then `chiml up`",
                    )
                say(f"lease {lease_id} is {found[0] if found else 'gone'}: reserving a new one")
                if found is not None and found[0] == "ERROR":
                    client.delete(lease_id)
                self._update(lease=None)
                lease_id = None
            else:
                say(f"lease {request.name} ({lease_id}) is {found[0]}: reusing it")
        if not lease_id:
            existing = client.find_by_name(request.name, st["user_id"])
            if existing is not None:
                lease_id = existing["id"]
                say(f"adopting live lease {request.name} ({lease_id}) left by an earlier run")
            else:
                say(f"reserving {request.to_json()['reservations']} at {request.site}")
                lease_id = client.create(request)
                created.append("lease")
            # Recorded before waiting: an interrupted wait leaves a lease `down` knows about.
            self._update(lease={"id": lease_id, "name": request.name, "status": "PENDING"})
        raw = client.wait_active(lease_id, self.cfg.lease_timeout_s, on_status=lambda s: say(f"lease is {s}"))
        info = client.describe(raw, request)
        self._update(lease=info.to_json(), phase="lease")
        say(f"lease ACTIVE until {info.end}; floating IP {info.floating_ip}")
        return info

    def _apply(
        self, lease: LeaseInfo, admin_cidr: str, created: list[str], say: Callable[[str], None]
    ) -> dict[str, Any]:
        Terraform.prepare(terraform_source_dir(), self.tf_dir)
        tf = self._terraform()
        write_tfvars(self.tfvars_path, build_tfvars(self.cfg, admin_cidr, lease, name=self._st()["name"]))
        if not tf.has_resources():
            created.append("terraform")  # even a failed apply can leave resources: destroy on rollback
        self._update(terraform_dir=str(self.tf_dir), phase="terraform")
        tf.init(progress=say)
        tf.apply(self.tfvars_path, progress=say)
        outputs = tf.output()
        for key in ("server", "agents", "api_url"):
            if key not in outputs:
                raise ChimlError(f"terraform output lacks {key!r}: is terraform/ up to date?")
        self._update(outputs=outputs)
        return outputs

    def _target(self, floating_ip: str) -> SSHTarget:
        return SSHTarget(
            user=self.cfg.ssh_user,
            key_path=Path(self.cfg.ssh_private_key).expanduser(),
            jump_host=floating_ip,
            known_hosts=self.known_hosts,
        )

    def _k3s(self, outputs: dict[str, Any], say: Callable[[str], None]) -> ClusterDescription:
        server = outputs["server"]
        agents = outputs["agents"]
        target = self._target(server["floating_ip"])
        self.ssh_config_path.parent.mkdir(parents=True, exist_ok=True)
        self.ssh_config_path.write_text(render_ssh_config(target, server["name"], agents), encoding="utf-8")
        connector = self.deps.connector(target)
        expected = [server["name"], *(agent["name"] for agent in agents)]
        nodes = wait_for_nodes(
            connector,
            expected,
            {agent["name"]: agent["private_ip"] for agent in agents},
            timeout_s=self.cfg.k3s_timeout_s,
            poll_s=self.deps.k3s_poll_s,
            progress=say,
        )
        gpu_agents = {agent["name"]: agent["private_ip"] for agent in agents if agent.get("gpu")}
        if gpu_agents:
            say(f"checking the NVIDIA container runtime on {', '.join(gpu_agents)}")
            check_gpu_runtimes(connector, gpu_agents)
        cluster = describe_cluster(nodes, self.kubeconfig_path, server["floating_ip"])
        fetch_kubeconfig(connector, server["floating_ip"], self.cfg.deployment, self.kubeconfig_path)
        self._update(kubeconfig=str(self.kubeconfig_path), phase="k3s")
        say(f"k3s ready: {len(nodes)} nodes, {sum(n.gpu for n in cluster.nodes)} with GPUs")
        return cluster

    # ------------------------------------------------------------------ failure handling
    def _leftovers(self) -> list[str]:
        st = self._st()
        left = []
        if self.tf_dir.exists() and self._terraform().has_resources():
            left.append(f"Terraform resources (state in {self.tf_dir})")
        lease = st.get("lease") or {}
        if lease.get("id"):
            left.append(f"lease {lease.get('name')} ({lease['id']})")
        return left

    def _leftovers_hint(self) -> str:
        left = self._leftovers()
        if not left:
            return "nothing was left reserved"
        return f"left: {'; '.join(left)}. `chiml up` continues, `chiml down --yes` removes them"

    def _rollback(self, created: list[str], say: Callable[[str], None]) -> str:
        """Undo what this run created, newest first; return the hint describing the outcome."""
        undone: list[str] = []
        st = self._st()
        # A failed init or an apply that failed before creating anything leaves an empty state.
        if "terraform" in created and self._terraform().has_resources():
            try:
                say("rolling back: terraform destroy")
                self._terraform().destroy(self.tfvars_path, progress=say)
                undone.append("Terraform resources destroyed")
            except ChimlError as err:
                return f"rollback stopped, {err.message}. {self._leftovers_hint()}"
        lease = st.get("lease") or {}
        if "lease" in created and lease.get("id"):
            try:
                say(f"rolling back: deleting lease {lease['id']}")
                self.deps.lease_client.delete(lease["id"])
                undone.append(f"lease {lease.get('name')} deleted")
            except ChimlError as err:
                return f"rollback stopped, {err.message}. {self._leftovers_hint()}"
            self._update(lease=None)
        left = self._leftovers()
        if not left:
            # Nothing reserved or created any more: no half-written state either.
            self.state.delete(STATE_KEY)
            shutil.rmtree(self.dir, ignore_errors=True)
        parts = [f"rolled back: {', '.join(undone)}"] if undone else []
        if left:
            parts.append(
                f"kept from an earlier run: {'; '.join(left)}; `chiml up` continues, `chiml down --yes` removes"
            )
        return ". ".join(parts) or "nothing was left reserved"

    # ------------------------------------------------------------------ down
    def describe_loss(self) -> str:
        st = self._st()
        outputs = st.get("outputs") or {}
        names = [outputs.get("server", {}).get("name")] + [a["name"] for a in outputs.get("agents", [])]
        names = [n for n in names if n]
        lease = st.get("lease") or {}
        return (
            f"This destroys deployment {st.get('name') or st.get('deployment')} at {st.get('site')}: instances "
            f"{', '.join(names) or '(none recorded)'} with everything on their disks (the k3s cluster, "
            "its volumes, MLflow runs, models and data stored in it), the security group and network, "
            f"and deletes lease {lease.get('name') or '-'} ({lease.get('id') or 'none'}). This cannot be undone."
        )

    def down(self, yes: bool = False, progress: Progress = silent, confirm: Confirm | None = None) -> bool:
        """Destroy the instances, then delete the lease. False when there was nothing to do.

        What is destroyed is reported through ``progress``; unless ``yes``, ``confirm`` (else
        ``deps.confirm``) is asked first, and without either the call is refused.
        """
        say = progress
        st = self._st()
        lease = st.get("lease") or {}
        has_tf = self.tf_dir.exists() and self._terraform().has_resources()
        if not st and not has_tf:
            say("no Chameleon deployment recorded in this CHIML_HOME: nothing to remove")
            return False
        say(self.describe_loss())
        if not yes:
            ask = confirm or self.deps.confirm
            if ask is None:
                raise InvalidInputError("refusing to destroy without confirmation", hint="pass --yes")
            if not ask("Destroy it?"):
                raise ChimlError("aborted: nothing was destroyed")
        if has_tf or lease.get("id"):
            check_credentials(self.cfg.site, self.deps.environ)
        if has_tf:
            tf = self._terraform()
            if not self.tfvars_path.is_file():
                raise ChimlError(f"{self.tfvars_path} is missing: cannot run terraform destroy")
            found = self.deps.lease_client.status(lease["id"]) if lease.get("id") else None
            lease_alive = found is not None and found[0] == "ACTIVE"
            say("terraform destroy" + ("" if lease_alive else " (lease over: instances already gone, no refresh)"))
            try:
                if not lease_alive:
                    # Blazar deleted the reserved floating IP with the lease, and the provider's
                    # delete of the association fails on the 404: forget what went with the lease.
                    tf.forget([a for a in tf.state_list() if _lease_bound(a)], progress=say)
                tf.destroy(self.tfvars_path, progress=say, refresh=lease_alive)
            except ChimlError as err:
                raise ChimlError(
                    err.message,
                    hint=f"lease {lease.get('id') or '-'} was kept; fix the cause and re-run `chiml down`",
                ) from None
        if lease.get("id"):
            say(f"deleting lease {lease.get('name')} ({lease['id']})")
            if not self.deps.lease_client.delete(lease["id"]):
                say("the lease was already gone")
        self.state.delete(STATE_KEY)
        shutil.rmtree(self.dir, ignore_errors=True)
        say("everything on Chameleon is released")
        return True


class DeploymentLease:
    """The lease of one deployment, as `chiml lease show|extend|delete` act on it."""

    def __init__(self, deployment: ChameleonDeployment) -> None:
        self.deployment = deployment

    def recorded(self) -> LeaseInfo:
        """The lease this CHIML_HOME recorded (no network); :class:`NotFoundError` when none."""
        lease = (self.deployment.state.get(STATE_KEY) or {}).get("lease") or {}
        if not lease.get("id"):
            raise NotFoundError("no lease recorded in this CHIML_HOME", hint="`chiml up --profile chameleon` makes one")
        return LeaseInfo.from_json(lease)

    def _client(self) -> LeaseClient:
        check_credentials(self.deployment.cfg.site, self.deployment.deps.environ)
        return self.deployment.deps.lease_client

    def show(self) -> LeaseInfo:
        """The recorded lease with its status and end as Blazar reports them now."""
        recorded = self.recorded()
        found = self._client().status(recorded.id)
        if found is None:
            raise NotFoundError(
                f"lease {recorded.id} no longer exists in Blazar", hint="`chiml down` cleans up the rest"
            )
        recorded.status, recorded.end = found
        return recorded

    def extend(self, hours: int) -> LeaseInfo:
        """Prolong the lease by ``hours`` (Blazar allows it within 48 h of the end); records the new end."""
        recorded = self.recorded()
        recorded.end = self._client().extend(recorded.id, hours)
        with self.deployment.state.edit() as doc:
            doc[STATE_KEY]["lease"]["end"] = recorded.end
        return recorded

    def delete(self) -> bool:
        """Delete the lease only (its instances go with it); False when Blazar had it gone already."""
        recorded = self.recorded()
        deleted = self._client().delete(recorded.id)
        with self.deployment.state.edit() as doc:
            doc[STATE_KEY]["lease"] = None
        return deleted


# Resource types whose object Blazar deletes itself at the end of the lease, and whose delete in
# terraform-provider-openstack 3.3.2 does not tolerate it being gone already (instances and
# ports do: their deletes treat a 404 as done).
LEASE_BOUND_TYPES = ("openstack_networking_floatingip_associate_v2",)


def _lease_bound(address: str) -> bool:
    """Whether a state address (e.g. ``module.server.openstack_..._associate_v2.server``) is lease-bound."""
    parts = address.split(".")
    return any(kind in parts for kind in LEASE_BOUND_TYPES)


def plan_sections(plan: dict[str, Any]) -> list[PlanSection]:
    """The dry-run plan in sections (JSON blocks for the lease request and the tfvars)."""
    sections = [PlanSection("Plan of `chiml up` on Chameleon (dry run: nothing is reserved or created)",
                            [f"  {i}. {step}" for i, step in enumerate(plan["steps"], 1)])]
    if plan["blockers"]:
        sections.append(PlanSection("Fix before a real `up`:", [f"  - {problem}" for problem in plan["blockers"]]))
    sections.append(PlanSection("Lease request:", json.dumps(plan["lease"], indent=2).splitlines()))
    sections.append(PlanSection(f"Terraform variables ({plan['terraform_root']}):",
                                json.dumps(plan["tfvars"], indent=2, sort_keys=True).splitlines()))
    return sections

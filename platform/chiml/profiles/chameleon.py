"""The chameleon profile: lease + Terraform + k3s on Chameleon Cloud, then the Helm layer.

The infrastructure work lives in :mod:`chiml.chameleon`; this class maps it onto the generic
profile contract (`plan`/`up`/`down`/`status`/`smoke_args`) and hands the ready cluster to the Helm
layer (:func:`chiml.kube.installer.install_platform`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from chiml.chameleon.auth import check_credentials
from chiml.chameleon.deployment import STATE_KEY, ChameleonDeployment, Dependencies, plan_sections
from chiml.chameleon.lease import LeaseInfo
from chiml.cluster import ClusterDescription, NodeInfo
from chiml.config import LoadedConfig
from chiml.errors import ChimlError, NotSupportedError
from chiml.kube.installer import describe_plan, install_platform, plan_platform
from chiml.paths import repo_root
from chiml.profiles.base import Confirm, Profile, ServiceStatus, SmokeRun, UpPlan
from chiml.progress import Progress, silent

if TYPE_CHECKING:
    from chiml.kube.endpoints import KServeEndpoints
from chiml.profiles.kubernetes import KubernetesProfile


class ChameleonProfile(Profile):
    """A k3s cluster on reserved Chameleon hardware."""

    name = "chameleon"

    def __init__(self, loaded: LoadedConfig, deps: Dependencies | None = None) -> None:
        super().__init__(loaded)
        self.deployment = ChameleonDeployment(loaded, deps)

    # ------------------------------------------------------------------ lifecycle
    def plan(self) -> UpPlan:
        # No credentials, no network, no state written.
        plan = self.deployment.plan()
        helm = plan_platform(self.loaded, self._planned_cluster(plan))
        names = [p.name for p in helm.releases]
        plan["steps"].append(f"helm: install {len(names)} releases on the k3s cluster, in order: {', '.join(names)}")
        releases = describe_plan(helm)
        releases.title = f"Then the Helm layer, on that cluster: {releases.title}"
        return UpPlan(self.name, [*plan_sections(plan), releases])

    def up(self, progress: Progress = silent) -> list[ServiceStatus]:
        cluster = self.deployment.up(progress=progress)
        install_platform(self.loaded, cluster, progress=progress)
        return self.status()

    def _planned_cluster(self, plan: dict[str, Any]) -> ClusterDescription:
        """The cluster `up` would hand the Helm layer, with placeholders for what the lease decides."""
        nodes = [NodeInfo(name=name, gpu=name in plan["gpu_nodes"], labels={}) for name in plan["nodes"]]
        return ClusterDescription(
            kubeconfig=str(self.deployment.kubeconfig_path),
            api_endpoint="https://<floating IP>:6443",
            kubernetes_version=self.config.chameleon.k3s_version,
            nodes=nodes,
            ingress_base_url="http://floating-ip.nip.io",
        )

    def down(self, yes: bool = False, progress: Progress = silent, confirm: Confirm | None = None) -> None:
        self.deployment.down(yes=yes, progress=progress, confirm=confirm)

    def status(self) -> list[ServiceStatus]:
        st = self.state.get(STATE_KEY) or {}
        if not st:
            return [ServiceStatus("chameleon", None, False, "not up (no deployment in this CHIML_HOME)")]
        statuses = [self._lease_status(st), self._api_status(st)]
        if self.state.get("kubernetes") and st.get("cluster"):
            try:  # the platform services on the cluster, as the kubernetes profile sees them
                statuses += self._kube().status()
            except Exception as err:  # status never raises
                message = err.message if isinstance(err, ChimlError) else str(err)
                statuses.append(ServiceStatus("platform", None, False, f"cannot query the cluster: {message}"))
        return statuses

    def _kube(self) -> KubernetesProfile:
        """The kubernetes profile on the same CHIML_HOME: it finds the cluster through the kubeconfig
        the Helm layer recorded, which is ours."""
        return KubernetesProfile(self.loaded)

    def _lease_status(self, st: dict[str, Any]) -> ServiceStatus:
        lease = st.get("lease") or {}
        if not lease.get("id"):
            return ServiceStatus("lease", None, False, "no lease recorded")
        try:
            check_credentials(self.config.chameleon.site, self.deployment.deps.environ)
            found = self.deployment.deps.lease_client.status(lease["id"])
        except Exception as err:  # status never raises: report instead
            message = err.message if isinstance(err, ChimlError) else str(err)
            return ServiceStatus("lease", None, False, f"{lease['id']}: cannot ask Blazar ({message})")
        if found is None:
            return ServiceStatus("lease", None, False, f"{lease['id']}: gone from Blazar")
        status, end = found
        info = LeaseInfo(id=lease["id"], name=lease.get("name", ""), status=status, end=end)
        warning = info.expiry_warning()
        detail = f"{status}, ends {end}" + (f" - {warning}" if warning else "")
        return ServiceStatus("lease", None, status == "ACTIVE", detail, extra={"id": lease["id"], "end": end})

    def _api_status(self, st: dict[str, Any]) -> ServiceStatus:
        cluster = st.get("cluster")
        if not cluster:
            return ServiceStatus("k3s", None, False, f"not ready (last step: {st.get('phase', 'none')})")
        url = cluster["api_endpoint"]
        host = url.split("//", 1)[1].rsplit(":", 1)[0]
        try:
            self.deployment.deps.tcp_connect(host, 6443)
            reachable = True
        except OSError as err:
            reachable = False
            reason = err.__class__.__name__
        nodes = cluster.get("nodes", [])
        detail = f"{len(nodes)} nodes ({sum(1 for n in nodes if n.get('gpu'))} GPU), kubeconfig {cluster['kubeconfig']}"
        if not reachable:
            detail = f"API unreachable ({reason}); " + detail
        return ServiceStatus("k3s", url, reachable, detail)

    # ------------------------------------------------------------------ where services are
    # The Helm layer on the k3s cluster answers, as it does for the kubernetes profile.
    def tracking_uri(self) -> str:
        return self._kube().tracking_uri()

    def optuna_storage(self) -> str:
        return self._kube().optuna_storage()

    def tensorboard_logdir(self) -> str:
        return self._kube().tensorboard_logdir()

    def endpoints(self, connect: bool = True) -> KServeEndpoints:
        """KServe endpoints on the k3s cluster (the kubernetes profile's backend)."""
        return self._kube().endpoints(connect=connect)

    def secrets(self) -> dict[str, str]:
        """Generated platform credentials (`chiml status --show-secrets`)."""
        return self._kube().secrets() if self.state.get("kubernetes") else {}

    def smoke_args(self) -> SmokeRun:
        """The node checks (SSH backend of testinfra) against the hosts in state."""
        st = self.state.get(STATE_KEY) or {}
        outputs = st.get("outputs") or {}
        if not outputs.get("server"):
            raise ChimlError("no Chameleon nodes recorded", hint="run `chiml up` first")
        root = repo_root()
        if root is None:
            raise NotSupportedError("smoke_tests/ not found: run from a chiml source checkout")
        nodes = [{"name": outputs["server"]["name"], "role": "server", "gpu": False}]
        nodes += [{"name": a["name"], "role": "agent", "gpu": bool(a.get("gpu"))} for a in outputs.get("agents", [])]
        hosts = ",".join(f"ssh://{n['name']}" for n in nodes)
        ssh_config = self.deployment.ssh_config_path
        args = [str(root / "smoke_tests" / "nodes"), f"--hosts={hosts}", f"--ssh-config={ssh_config}"]
        env = {"CHIML_SMOKE_NODES": json.dumps(nodes)}
        return SmokeRun(args, env)

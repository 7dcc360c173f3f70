"""The kubernetes profile: the platform as Helm releases on the cluster of the current kubeconfig."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chiml.cluster import ClusterDescription
from chiml.config import LoadedConfig
from chiml.errors import ChimlError, InvalidInputError, NotSupportedError
from chiml.profiles.base import Confirm, Profile, ServiceStatus, SmokeRun, UpPlan
from chiml.progress import Progress, silent

if TYPE_CHECKING:
    from chiml.kube.endpoints import KServeEndpoints
    from chiml.kube.kubeapi import KubeApi

# service -> (release, namespace ("" = platform namespace), pod selector, ingress host prefix)
SERVICES: list[tuple[str, str, str, str, str | None]] = [
    ("mlflow", "mlflow", "", "app.kubernetes.io/instance=mlflow", "mlflow"),
    ("optuna-dashboard", "optuna-dashboard", "", "app.kubernetes.io/instance=optuna-dashboard", "optuna"),
    ("tensorboard", "tensorboard", "", "app.kubernetes.io/instance=tensorboard", "tensorboard"),
    ("jupyterlab", "jupyterlab", "", "app.kubernetes.io/instance=jupyterlab", "jupyterlab"),
    ("postgresql", "postgres", "", "cnpg.io/cluster=postgres-cluster", None),
    ("s3 (seaweedfs)", "seaweedfs", "", "app.kubernetes.io/instance=seaweedfs", None),
    ("kserve", "kserve-resources", "kserve", "control-plane=kserve-controller-manager", None),
]


class KubernetesProfile(Profile):
    """An existing cluster, reached through a kubeconfig."""

    name = "kubernetes"

    def __init__(self, loaded: LoadedConfig) -> None:
        super().__init__(loaded)
        self.kcfg = loaded.config.kubernetes
        self._api: KubeApi | None = None

    # ----------------------------------------------------------------- plumbing
    def api(self) -> KubeApi:
        """The Kubernetes API (connected on first use: dry runs never connect)."""
        if self._api is None:
            from chiml.kube.kubeapi import KubeApi

            recorded = self.state.get("kubernetes") or {}
            kubeconfig = self.kcfg.kubeconfig or recorded.get("kubeconfig")
            self._api = KubeApi.from_kubeconfig(kubeconfig, self.kcfg.context)
        return self._api

    def _recorded(self) -> dict[str, Any]:
        return self.state.get("kubernetes") or {}

    def _require_installed(self) -> dict[str, Any]:
        recorded = self._recorded()
        if not recorded.get("releases"):
            hint = f"run `chiml up --profile {self.loaded.profile}`"
            raise ChimlError("the platform is not installed on a cluster", hint=hint)
        return recorded

    def _offline_cluster(self) -> ClusterDescription:
        """What a dry run knows without asking the cluster."""
        from chiml.kube.kubeapi import default_kubeconfig

        return ClusterDescription(
            kubeconfig=self.kcfg.kubeconfig or default_kubeconfig(),
            api_endpoint="(not contacted in a dry run)",
            kubernetes_version="unknown",
            storage_class=self.kcfg.storage_class or "<the cluster's default>",
            ingress_base_url=self.kcfg.ingress_base_url,
        )

    # ----------------------------------------------------------------- lifecycle
    def plan(self) -> UpPlan:
        from chiml.kube.installer import describe_plan, plan_platform

        # no network at all: the plan comes from releases.yaml and the values files
        return UpPlan(self.name, [describe_plan(plan_platform(self.loaded, self._offline_cluster(), gpu=True))])

    def up(self, progress: Progress = silent) -> list[ServiceStatus]:
        from chiml.kube.discovery import describe_cluster
        from chiml.kube.installer import install_platform

        progress("reading the cluster (nodes, GPUs, storage classes)")
        cluster = describe_cluster(self.api(), self.kcfg)
        install_platform(self.loaded, cluster, api=self.api(), progress=progress)
        return self.status()

    def down(self, yes: bool = False, progress: Progress = silent, confirm: Confirm | None = None) -> None:
        from chiml.kube.installer import uninstall_platform

        recorded = self._recorded()
        if not recorded.get("releases"):
            return
        cluster = ClusterDescription.from_json(recorded["cluster"])
        uninstall_platform(self.loaded, cluster, progress=progress)

    # ----------------------------------------------------------------- status
    def _url(self, prefix: str | None) -> str | None:
        recorded = self._recorded()
        if prefix is None or not recorded.get("ingress_domain"):
            return None
        return f"{recorded.get('ingress_scheme', 'http')}://{prefix}.{recorded['ingress_domain']}"

    def status(self) -> list[ServiceStatus]:
        recorded = self._recorded()
        if not recorded.get("releases"):
            detail = f"not installed: run `chiml up --profile {self.loaded.profile}`"
            return [ServiceStatus("platform", None, False, detail)]
        namespace = recorded.get("namespace", self.kcfg.namespace)
        installed = recorded["releases"]
        statuses = []
        for service, release, ns, selector, prefix in SERVICES:
            url = self._url(prefix)
            if release not in installed:
                statuses.append(ServiceStatus(service, url, False, f"release {release} not installed"))
                continue
            try:
                ready, total = self.api().pods_ready(ns or namespace, selector)
            except ChimlError as err:
                statuses.append(ServiceStatus(service, url, False, err.message))
                continue
            except Exception as err:  # an API error must not make `status` raise
                statuses.append(ServiceStatus(service, url, False, f"{type(err).__name__}: {err}"))
                continue
            healthy = total > 0 and ready == total
            detail = f"{ready}/{total} pods ready" + ("" if prefix is None else " (behind basic auth)")
            statuses.append(ServiceStatus(service, url, healthy, detail, extra={"release": release}))
        return statuses

    def secrets(self) -> dict[str, str]:
        """Generated credentials, for `chiml status --show-secrets`."""
        from chiml.kube.secrets import read_platform_secrets

        recorded = self._require_installed()
        return read_platform_secrets(self.api(), recorded.get("namespace", self.kcfg.namespace))

    # ----------------------------------------------------------------- where things are
    def tracking_uri(self) -> str:
        """MLflow behind the ingress (its basic-auth credentials: :meth:`tracking_credentials`)."""
        self._require_installed()
        url = self._url("mlflow")
        if url is None:
            raise InvalidInputError("no ingress domain recorded for MLflow", hint="set kubernetes.ingress_base_url")
        return url

    def tracking_credentials(self) -> dict[str, str]:
        """The ingress's basic-auth credentials, as MLflow's client reads them from the environment."""
        from chiml.kube.secrets import UI_AUTH_SECRET

        recorded = self._require_installed()
        secret = self.api().read_secret(recorded.get("namespace", self.kcfg.namespace), UI_AUTH_SECRET) or {}
        if not secret:
            return {}
        return {"MLFLOW_TRACKING_USERNAME": secret.get("username", ""),
                "MLFLOW_TRACKING_PASSWORD": secret.get("password", "")}

    def optuna_storage(self) -> str:
        """Refused: the Optuna database is a Service inside the cluster, which this machine cannot reach
        (and must not be handed). Tuning workers run there and get it from the Helm layer."""
        recorded = self._require_installed()
        dashboard = self._url("optuna")
        raise NotSupportedError(
            "the Optuna database is reachable inside the cluster only: `chiml tune` runs its workers there",
            hint=f"see the studies in optuna-dashboard{f' at {dashboard}' if dashboard else ''}, or follow one with "
                 f"`chiml runs logs RUN_ID` (namespace {recorded.get('namespace', self.kcfg.namespace)})",
        )

    def tensorboard_logdir(self) -> str:
        """The S3 log root the cluster's TensorBoard watches (helm/values/tensorboard.yaml)."""
        from chiml.kube.incluster import tensorboard_logs
        from chiml.kube.installer import helm_dir

        recorded = self._recorded()
        return tensorboard_logs(helm_dir(self.loaded), recorded.get("namespace", self.kcfg.namespace)).uri

    def endpoints(self, connect: bool = True) -> KServeEndpoints:
        """KServe endpoints; ``connect=False`` builds manifests only (``deploy --dry-run``)."""
        from chiml.kube.endpoints import KServeEndpoints, OptimizedArtifact

        serving = self.config.serving
        defaults: dict[str, Any] = {"default_runtime": serving.runtime, "default_replicas": serving.replicas,
                    "default_workers": serving.workers}
        if not connect:
            recorded = self._recorded()
            return KServeEndpoints(
                None, recorded.get("namespace", self.kcfg.namespace),
                ingress_scheme=recorded.get("ingress_scheme", "http"),
                ingress_domain=recorded.get("ingress_domain", "chiml.local"), **defaults,
            )  # fmt: skip
        recorded = self._require_installed()

        def resolve(uri: str) -> str:
            # models:/ and runs:/ -> the artifact location MLflow recorded (mlflow-artifacts:/...)
            from chiml.lifecycle import mlflow_client

            client = mlflow_client.connect_to(self.tracking_uri(), self.tracking_credentials())
            return mlflow_client.artifact_location(client, uri)

        def optimized(uri: str, runtime: str) -> OptimizedArtifact:
            # what `chiml optimize` compiled for that version (the decision, for `auto`)
            from chiml.lifecycle import mlflow_client
            from chiml.optimize.artifacts import compiled_artifact

            client = mlflow_client.connect_to(self.tracking_uri(), self.tracking_credentials())
            serving_runtime, artifact_uri, candidate = compiled_artifact(client, uri, runtime)
            return OptimizedArtifact(serving_runtime, artifact_uri, candidate)

        return KServeEndpoints(
            self.api(),
            recorded.get("namespace", self.kcfg.namespace),
            ingress_scheme=recorded.get("ingress_scheme", "http"),
            ingress_domain=recorded.get("ingress_domain", "chiml.local"),
            resolve_uri=resolve,
            resolve_optimized=optimized,
            **defaults,
        )

    def smoke_args(self) -> SmokeRun:
        from chiml.paths import repo_root

        recorded = self._require_installed()
        root = repo_root()
        if root is None:
            raise NotSupportedError("the kube smoke tests live in the source checkout (smoke_tests/kube)")
        env = {
            "CHIML_KUBE_NAMESPACE": recorded.get("namespace", self.kcfg.namespace),
            "KUBECONFIG": recorded.get("kubeconfig", ""),
        }
        return SmokeRun([str(root / "smoke_tests" / "kube")], env)

"""Model endpoints on a cluster: KServe InferenceServices that run chiml's serving runtimes.

Same interface as the local endpoint backend (deploy / list / get / scale / delete / url), so
`chiml deploy` and ``Platform.deploy`` work unchanged on the kubernetes and chameleon profiles.

Each endpoint is one InferenceService in the platform namespace, in KServe's Standard mode
(a Deployment + Service + Ingress, no Knative), using the ``chiml-<runtime>``
ClusterServingRuntime, the ``chiml-models`` ServiceAccount (S3 credentials for the storage
initializer) and, through its Ingress, the ``chiml-inference-auth`` Traefik middleware: a
request needs the endpoint token (``chiml status --show-secrets``) as basic-auth password.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from chiml.errors import ChimlError
from chiml.kube.kubeapi import ISVC_GROUP, ISVC_VERSION, KubeApi
from chiml.kube.secrets import INFERENCE_AUTH_SECRET
from chiml.serving.backend import Endpoint, EndpointBackend, EndpointStatus, check_name
from chiml_contract import runtimes as contract_runtimes

MANAGED_LABEL = "app.kubernetes.io/managed-by"
ENDPOINT_LABEL = "chiml.io/endpoint"
MODEL_SERVICE_ACCOUNT = "chiml-models"
ARTIFACT_BUCKET_ROOT = "s3://chiml-artifacts/mlflow"

# runtime -> (model format, ClusterServingRuntime); formats match helm/charts/chiml-runtimes
RUNTIMES: dict[str, tuple[str, str]] = {
    name: (runtime.model_format, runtime.serving_runtime) for name, runtime in contract_runtimes.RUNTIMES.items()
}
STORAGE_SCHEMES = ("s3://", "gs://", "pvc://", "https://", "http://", "hf://")
WORKERS_ARG = re.compile(r"^--workers=(\d+)$")


def _ready_condition(obj: dict[str, Any]) -> tuple[bool, str]:
    status = obj.get("status") or {}
    generation = obj.get("metadata", {}).get("generation")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            current = status.get("observedGeneration", generation) == generation
            ok = condition.get("status") == "True" and current
            why = condition.get("message") or condition.get("reason") or ("" if ok else "not ready yet")
            return ok, "" if ok else str(why)
    return False, "waiting for the KServe controller"


def _check_replicas(replicas: int) -> None:
    if replicas < 1:
        raise ChimlError(
            "replicas must be at least 1 on a cluster (KServe's Standard mode does not scale to zero)",
            hint="`chiml endpoints delete NAME` removes an endpoint",
        )


def _status(obj: dict[str, Any], ready: bool, detail: str) -> EndpointStatus:
    if ready:
        return "ready"
    # KServe reports crash loops and failed model loads as Ready=False with a reason
    failed = any(word in detail for word in ("Failed", "Error", "BackOff", "Unavailable"))
    return "failed" if failed else "starting"


class KServeEndpoints(EndpointBackend):
    """Endpoint backend for a cluster."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        ingress_scheme: str = "http",
        ingress_domain: str = "chiml.local",
        default_runtime: str = "mlflow",
        default_replicas: int = 1,
        default_workers: int = 1,
        gpu_runtime_class: str = "nvidia",
        resolve_uri: Callable[[str], str] | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.ingress_scheme = ingress_scheme
        self.ingress_domain = ingress_domain
        self.default_runtime = default_runtime
        self.default_replicas = default_replicas
        self.default_workers = default_workers
        self.gpu_runtime_class = gpu_runtime_class
        self._resolve_uri = resolve_uri

    # ----------------------------------------------------------------- helpers
    def storage_uri(self, model_uri: str) -> str:
        """Where KServe's storage initializer downloads the model from."""
        if model_uri.startswith("mlflow-artifacts:/"):
            # proxied MLflow artifacts live under the server's artifact destination
            return f"{ARTIFACT_BUCKET_ROOT}/{model_uri.removeprefix('mlflow-artifacts:/').lstrip('/')}"
        if model_uri.startswith(("models:/", "runs:/")):
            if self._resolve_uri is None:
                raise ChimlError(f"cannot resolve {model_uri}: no MLflow connection for this endpoint backend")
            return self.storage_uri(self._resolve_uri(model_uri))
        if model_uri.startswith(STORAGE_SCHEMES):
            return model_uri
        raise ChimlError(
            f"model URI {model_uri!r} cannot be served from a cluster",
            hint="use models:/NAME/VERSION, runs:/RUN_ID/PATH, or an s3:// / pvc:// location",
        )

    def _runtime(self, runtime: str | None) -> str:
        chosen = runtime or self.default_runtime
        if chosen == "auto":
            chosen = "mlflow"
        if chosen not in RUNTIMES:
            raise ChimlError(f"unknown runtime {chosen!r}: choose one of {', '.join(RUNTIMES)}")
        return chosen

    def _url_for(self, name: str) -> str:
        # KServe's default domain template: <name>-<namespace>.<ingress domain>
        return f"{self.ingress_scheme}://{name}-{self.namespace}.{self.ingress_domain}"

    def _to_endpoint(self, obj: dict[str, Any]) -> Endpoint:
        meta, spec = obj["metadata"], obj.get("spec", {})
        predictor = spec.get("predictor", {})
        model = predictor.get("model", {})
        ready, detail = _ready_condition(obj)
        url = (obj.get("status") or {}).get("url") or self._url_for(meta["name"])
        annotations = meta.get("annotations") or {}
        workers = 1
        for arg in model.get("args", []):
            match = WORKERS_ARG.match(arg)
            if match:
                workers = int(match.group(1))
        return Endpoint(
            name=meta["name"],
            model_uri=annotations.get("chiml.io/model-uri", model.get("storageUri", "")),
            runtime=annotations.get("chiml.io/runtime", model.get("runtime", "")),
            url=url,
            replicas=int(predictor.get("minReplicas", 1)),
            workers=workers,
            status=_status(obj, ready, detail),
            urls=[url],
            detail=detail,
            created=str(meta.get("creationTimestamp", "")),
        )

    def build(
        self, model_uri: str, name: str, runtime: str | None, replicas: int | None, workers: int | None
    ) -> dict[str, Any]:
        """The InferenceService manifest for an endpoint."""
        check_name(name)  # the same rule as the local backend: a name that works locally works here
        runtime = self._runtime(runtime)
        replicas = self.default_replicas if replicas is None else replicas
        workers = self.default_workers if workers is None else workers
        if workers < 1:
            raise ChimlError("workers must be at least 1")
        _check_replicas(replicas)
        model_format, serving_runtime = RUNTIMES[runtime]
        model: dict[str, Any] = {
            "modelFormat": {"name": model_format},
            "runtime": serving_runtime,
            "protocolVersion": "v2",
            "storageUri": self.storage_uri(model_uri),
        }
        predictor: dict[str, Any] = {
            "minReplicas": replicas,
            "maxReplicas": replicas,
            "serviceAccountName": MODEL_SERVICE_ACCOUNT,
            "model": model,
        }
        if runtime == "tensorrt":
            # a ServingRuntime cannot carry the RuntimeClass; k3s runs GPU pods under `nvidia`
            predictor["runtimeClassName"] = self.gpu_runtime_class
        else:
            model["args"] = [f"--workers={workers}"]
        return {
            "apiVersion": f"{ISVC_GROUP}/{ISVC_VERSION}",
            "kind": "InferenceService",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {MANAGED_LABEL: "chiml", ENDPOINT_LABEL: name},
                "annotations": {
                    "serving.kserve.io/deploymentMode": "Standard",
                    # KServe copies these onto the Ingress it creates: Traefik checks the token
                    "traefik.ingress.kubernetes.io/router.middlewares": (
                        f"{self.namespace}-chiml-inference-auth@kubernetescrd"
                    ),
                    "chiml.io/model-uri": model_uri,
                    "chiml.io/runtime": runtime,
                },
            },
            "spec": {"predictor": predictor},
        }

    # ----------------------------------------------------------------- the backend interface
    def deploy(
        self,
        model_uri: str,
        name: str,
        runtime: str | None = None,
        replicas: int | None = None,
        workers: int | None = None,
        wait: bool = True,
        timeout_s: float = 600.0,
        poll_s: float = 2.0,
    ) -> Endpoint:
        """Create (or update in place) the endpoint; with ``wait``, return once it is Ready.

        A newly created endpoint that does not become Ready in time is deleted again, so a
        failed deploy leaves nothing behind; an updated one is left as KServe keeps it (its
        previous revision keeps serving until the new one is ready).
        """
        body = self.build(model_uri, name, runtime, replicas, workers)
        existing = self.api.get_isvc(self.namespace, name)
        if existing is None:
            self.api.create_isvc(self.namespace, body)
        else:
            if existing["metadata"].get("labels", {}).get(MANAGED_LABEL) != "chiml":
                raise ChimlError(f"InferenceService {name} exists and was not created by chiml: choose another name")
            self.api.patch_isvc(self.namespace, name, {"metadata": body["metadata"], "spec": body["spec"]})
        if not wait:
            return self.get(name)
        deadline = time.monotonic() + timeout_s
        while True:
            obj = self.api.get_isvc(self.namespace, name)
            if obj is None:
                raise ChimlError(f"endpoint {name} disappeared while deploying")
            ready, detail = _ready_condition(obj)
            if ready:
                return self._to_endpoint(obj)  # status "ready"
            if time.monotonic() >= deadline:
                events = self.api.warning_events(self.namespace, limit=5)
                if existing is None:
                    self.api.delete_isvc(self.namespace, name)
                raise ChimlError(
                    f"endpoint {name} did not become ready within {timeout_s:.0f}s: {detail}"
                    + (" (deleted again)" if existing is None else ""),
                    hint="; ".join(events) if events else "see `kubectl -n "
                    f"{self.namespace} describe inferenceservice {name}`",
                )
            time.sleep(poll_s)

    def list(self) -> list[Endpoint]:
        return [self._to_endpoint(o) for o in self.api.list_isvc(self.namespace, f"{MANAGED_LABEL}=chiml")]

    def get(self, name: str) -> Endpoint:
        obj = self.api.get_isvc(self.namespace, name)
        if obj is None:
            raise ChimlError(f"no endpoint named {name!r}", hint="`chiml endpoints list` shows the deployed ones")
        return self._to_endpoint(obj)

    def scale(self, name: str, replicas: int) -> Endpoint:
        _check_replicas(replicas)
        self.get(name)  # a clear error for an unknown name
        self.api.patch_isvc(
            self.namespace, name, {"spec": {"predictor": {"minReplicas": replicas, "maxReplicas": replicas}}}
        )
        return self.get(name)

    def delete(self, name: str) -> None:
        if not self.api.delete_isvc(self.namespace, name):
            raise ChimlError(f"no endpoint named {name!r}")

    def url(self, name: str) -> str:
        endpoint = self.get(name)
        return endpoint.url or self._url_for(name)

    def auth(self) -> tuple[str, str] | None:
        """(user, token) a client sends as basic auth to reach an endpoint through the ingress."""
        secret = self.api.read_secret(self.namespace, INFERENCE_AUTH_SECRET)
        if not secret:
            return None
        return secret.get("username", "chiml"), secret.get("token", "")

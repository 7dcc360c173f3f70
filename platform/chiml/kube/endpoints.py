"""Model endpoints on a cluster: KServe InferenceServices that run chiml's serving runtimes.

Same interface as the local endpoint backend (deploy / update / list / get / scale / delete /
url), so `chiml deploy` and ``Platform.deploy`` work unchanged on the kubernetes and chameleon
profiles.

Each endpoint is one InferenceService in the platform namespace, in KServe's Standard mode
(a Deployment + Service + Ingress + HPA, no Knative), using the ``chiml-<runtime>``
ClusterServingRuntime, the ``chiml-models`` ServiceAccount (S3 credentials for the storage
initializer) and, through its Ingress, the ``chiml-inference-auth`` Traefik middleware: a
request needs the endpoint token (``chiml status --show-secrets``) as basic-auth password.

* Deploying onto an existing name patches the InferenceService (never delete + create): its
  Deployment rolls one new pod in before an old one goes (``maxUnavailable: 0``).
* ``--replicas N`` is ``minReplicas = maxReplicas = N``; a range autoscales with the HPA on
  ``cpu`` (percent of the request) or ``memory``, as KServe's Standard mode allows.
* A compiled runtime (``onnxruntime``, ``openvino``, ``tensorrt``..., or ``auto``: what
  ``chiml optimize`` chose for that model version) serves the compiled artifact that optimize
  logged to MLflow, not the MLflow model folder.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chiml.errors import AlreadyExistsError, ChimlError, InvalidInputError, NotFoundError, NotSupportedError
from chiml.kube.kubeapi import ISVC_GROUP, ISVC_VERSION, KubeApi, api_error_message
from chiml.kube.secrets import INFERENCE_AUTH_SECRET
from chiml.progress import Progress, silent
from chiml.serving.backend import Endpoint, EndpointBackend, EndpointStatus, Scaling, check_name, resolve_scaling
from chiml_contract import runtimes as contract_runtimes

MANAGED_LABEL = "app.kubernetes.io/managed-by"
ENDPOINT_LABEL = "chiml.io/endpoint"
MODEL_SERVICE_ACCOUNT = "chiml-models"
ARTIFACT_BUCKET_ROOT = "s3://chiml-artifacts/mlflow"
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
# What KServe's Standard mode (HPA) scales on; its admission webhook refuses the others.
CLUSTER_METRICS = ("cpu", "memory")
# Stand-ins for what only MLflow on the cluster knows, in `--dry-run` output.
UNRESOLVED = "<resolved at deploy: {}>"

# runtime -> (model format, ClusterServingRuntime); formats match helm/charts/chiml-runtimes
RUNTIMES: dict[str, tuple[str, str]] = {
    name: (runtime.model_format, runtime.serving_runtime) for name, runtime in contract_runtimes.RUNTIMES.items()
}
STORAGE_SCHEMES = ("s3://", "gs://", "pvc://", "https://", "http://", "hf://")
WORKERS_ARG = re.compile(r"^--workers=(\d+)$")
# Fields a merge patch must null explicitly when the new spec no longer has them.
_OPTIONAL_PREDICTOR = ("scaleMetric", "scaleTarget", "runtimeClassName")


@dataclass(frozen=True)
class OptimizedArtifact:
    """A compiled artifact `chiml optimize` logged: the runtime that serves it and where it is."""

    runtime: str  # a key of RUNTIMES
    artifact_uri: str  # MLflow artifact URI (mlflow-artifacts:/...) of the artifact folder
    candidate: str  # the optimize candidate (onnxruntime-int8, ...)


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


def _status(obj: dict[str, Any], ready: bool, detail: str) -> EndpointStatus:
    if ready:
        return "ready"
    # KServe reports crash loops and failed model loads as Ready=False with a reason
    failed = any(word in detail for word in ("Failed", "Error", "BackOff", "Unavailable"))
    return "failed" if failed else "starting"


def _cluster_scaling(scaling: Scaling) -> Scaling:
    """Refuse what KServe's webhook would refuse, in one line and before anything is sent."""
    if scaling.metric is not None and scaling.metric not in CLUSTER_METRICS:
        raise NotSupportedError(
            f"scale metric {scaling.metric!r} is not available on a cluster",
            hint="KServe's Standard mode scales with the HPA on cpu or memory",
        )
    if scaling.metric == "cpu" and scaling.target is not None and not 1 <= scaling.target <= 100:
        raise InvalidInputError("a cpu scale target is a percentage of the request: 1-100")
    return scaling


class KServeEndpoints(EndpointBackend):
    """Endpoint backend for a cluster (``api`` None: only ``build``/``manifests``)."""

    def __init__(
        self,
        api: KubeApi | None,
        namespace: str,
        ingress_scheme: str = "http",
        ingress_domain: str = "chiml.local",
        default_runtime: str = "mlflow",
        default_replicas: int = 1,
        default_workers: int = 1,
        gpu_runtime_class: str = "nvidia",
        resolve_uri: Callable[[str], str] | None = None,
        resolve_optimized: Callable[[str, str], OptimizedArtifact] | None = None,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.ingress_scheme = ingress_scheme
        self.ingress_domain = ingress_domain
        self.default_runtime = default_runtime
        self.default_replicas = default_replicas
        self.default_workers = default_workers
        self.gpu_runtime_class = gpu_runtime_class
        self._resolve_uri = resolve_uri
        self._resolve_optimized = resolve_optimized

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            raise ChimlError("this endpoint backend was made for a dry run: it has no cluster connection")
        return self._api

    # ----------------------------------------------------------------- what to serve
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
        raise InvalidInputError(
            f"model URI {model_uri!r} cannot be served from a cluster",
            hint="use models:/NAME/VERSION, runs:/RUN_ID/PATH, or an s3:// / pvc:// location",
        )

    def _what_to_serve(self, model_uri: str, runtime: str | None, dry_run: bool) -> tuple[str, str, str]:
        """(runtime, storage URI, what it is) for ``model_uri`` served by ``runtime``.

        ``mlflow`` serves the MLflow model itself, and a storage URI (s3://, pvc://...) is served
        as the named runtime's artifact; for a registered model any other runtime (``auto``
        included) serves the artifact optimize compiled for that version, found through MLflow."""
        chosen = runtime or self.default_runtime
        known = chosen == "auto" or chosen in RUNTIMES or _is_candidate(chosen)
        if not known:
            raise InvalidInputError(f"unknown runtime {chosen!r}: choose auto or one of {', '.join(RUNTIMES)}")
        registry = model_uri.startswith(("models:/", "runs:/"))
        if chosen == "mlflow" or (chosen in RUNTIMES and not registry):
            # the MLflow model, or a storage location the user says holds that runtime's artifact
            if dry_run and registry:
                return chosen, UNRESOLVED.format(model_uri), model_uri
            return chosen, self.storage_uri(model_uri), model_uri
        if not model_uri.startswith("models:/"):
            raise InvalidInputError(
                f"--runtime {chosen} serves what `chiml optimize` compiled for a registered model version",
                hint="deploy models:/NAME/VERSION (or @ALIAS), or use --runtime mlflow",
            )
        if dry_run:
            shown = chosen if chosen in RUNTIMES else UNRESOLVED.format(f"the runtime optimize chose ({chosen})")
            return shown, UNRESOLVED.format(f"the {chosen} artifact of {model_uri}"), model_uri
        if self._resolve_optimized is None:
            raise ChimlError(f"cannot look up the optimized artifact of {model_uri}: no MLflow connection")
        artifact = self._resolve_optimized(model_uri, chosen)
        if artifact.runtime not in RUNTIMES:
            raise NotSupportedError(f"runtime {artifact.runtime!r} has no ClusterServingRuntime in chiml-runtimes")
        return artifact.runtime, self.storage_uri(artifact.artifact_uri), f"{model_uri} ({artifact.candidate} artifact)"

    # ----------------------------------------------------------------- the manifest
    def _url_for(self, name: str) -> str:
        # KServe's default domain template: <name>-<namespace>.<ingress domain>
        return f"{self.ingress_scheme}://{name}-{self.namespace}.{self.ingress_domain}"

    def manifests(
        self,
        model_uri: str,
        name: str,
        runtime: str | None = None,
        replicas: int | None = None,
        workers: int | None = None,
        *,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        scale_metric: str | None = None,
        scale_target: int | None = None,
    ) -> list[dict[str, Any]]:
        """The objects :meth:`deploy` would send (the InferenceService), nothing contacted: what
        only the cluster's MLflow knows is shown as a placeholder."""
        return [self.build(model_uri, name, runtime, replicas, workers, min_replicas=min_replicas,
                           max_replicas=max_replicas, scale_metric=scale_metric, scale_target=scale_target,
                           dry_run=True)]

    def build(
        self,
        model_uri: str,
        name: str,
        runtime: str | None,
        replicas: int | None,
        workers: int | None,
        *,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        scale_metric: str | None = None,
        scale_target: int | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """The InferenceService manifest for an endpoint."""
        check_name(name)  # the same rule as the local backend: a name that works locally works here
        scaling = self._scaling(replicas, min_replicas, max_replicas, scale_metric, scale_target)
        scaling = scaling or Scaling(self.default_replicas, self.default_replicas)
        workers = self.default_workers if workers is None else workers
        if workers < 1:
            raise InvalidInputError("workers must be at least 1")
        runtime, storage, source = self._what_to_serve(model_uri, runtime, dry_run)
        model_format, serving_runtime = RUNTIMES.get(runtime, (runtime, runtime))
        model: dict[str, Any] = {
            "modelFormat": {"name": model_format},
            "runtime": serving_runtime,
            "protocolVersion": "v2",
            "storageUri": storage,
        }
        predictor: dict[str, Any] = {
            **_predictor_scaling(scaling),
            "serviceAccountName": MODEL_SERVICE_ACCOUNT,
            # a rolling update never has fewer ready pods than asked for
            "deploymentStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
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
                    AUTOSCALER_CLASS: "hpa",
                    # KServe copies these onto the Ingress it creates: Traefik checks the token
                    "traefik.ingress.kubernetes.io/router.middlewares": (
                        f"{self.namespace}-chiml-inference-auth@kubernetescrd"
                    ),
                    "chiml.io/model-uri": model_uri,
                    "chiml.io/runtime": runtime,
                    "chiml.io/source": source,
                },
            },
            "spec": {"predictor": predictor},
        }

    def _scaling(self, replicas: int | None, min_replicas: int | None, max_replicas: int | None,
                 metric: str | None, target: int | None) -> Scaling | None:
        # Standard mode does not scale to zero: at least one replica
        scaling = resolve_scaling(replicas, min_replicas, max_replicas, metric, target,
                                  default_replicas=self.default_replicas, metrics=("cpu", "memory", "concurrency",
                                                                                   "rps"))
        return None if scaling is None else _cluster_scaling(scaling)

    def _to_endpoint(self, obj: dict[str, Any], events: list[dict[str, Any]] | None = None) -> Endpoint:
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
        low = int(predictor.get("minReplicas", 1))
        high = int(predictor.get("maxReplicas", low))
        return Endpoint(
            name=meta["name"],
            model_uri=annotations.get("chiml.io/model-uri", model.get("storageUri", "")),
            runtime=annotations.get("chiml.io/runtime", model.get("runtime", "")),
            url=url,
            replicas=low,
            workers=workers,
            status=_status(obj, ready, detail),
            urls=[url],
            detail=detail or annotations.get("chiml.io/source", ""),
            created=str(meta.get("creationTimestamp", "")),
            min_replicas=low,
            max_replicas=high,
            scale_metric=predictor.get("scaleMetric", "cpu") if high > low else None,
            scale_target=predictor.get("scaleTarget") if high > low else None,
            events=events or [],
        )

    # ----------------------------------------------------------------- the backend interface
    def deploy(
        self,
        model_uri: str,
        name: str,
        runtime: str | None = None,
        replicas: int | None = None,
        workers: int | None = None,
        *,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        scale_metric: str | None = None,
        scale_target: int | None = None,
        progress: Progress = silent,
        wait: bool = True,
        timeout_s: float = 600.0,
        poll_s: float = 2.0,
    ) -> Endpoint:
        """Create the endpoint, or update it in place (a patch: KServe rolls the pods); with
        ``wait``, return once it is Ready.

        A newly created endpoint that does not become Ready in time is deleted again, so a
        failed deploy leaves nothing behind; an updated one is left as KServe keeps it (its
        previous pods keep serving until new ones are ready).
        """
        scaling_asked = any(v is not None for v in (replicas, min_replicas, max_replicas, scale_metric, scale_target))
        body = self.build(model_uri, name, runtime, replicas, workers, min_replicas=min_replicas,
                          max_replicas=max_replicas, scale_metric=scale_metric, scale_target=scale_target)
        existing = self.api.get_isvc(self.namespace, name)
        if existing is None:
            progress(f"creating InferenceService {self.namespace}/{name}")
            self._send(f"create InferenceService {name}", self.api.create_isvc, self.namespace, body)
        else:
            if existing["metadata"].get("labels", {}).get(MANAGED_LABEL) != "chiml":
                raise AlreadyExistsError(
                    f"InferenceService {name} exists and was not created by chiml: choose another name"
                )
            predictor = body["spec"]["predictor"]
            if not scaling_asked:  # an update keeps the endpoint's replicas and autoscaling
                old = existing["spec"].get("predictor", {})
                for key in ("minReplicas", "maxReplicas", *_OPTIONAL_PREDICTOR[:2]):
                    predictor.pop(key, None)
                    if key in old:
                        predictor[key] = old[key]
            progress(f"updating InferenceService {self.namespace}/{name} (rolling)")
            self._send(f"update InferenceService {name}", self.api.patch_isvc, self.namespace, name,
                       _merge_patch_of(existing, body))
        if not wait:
            return self.get(name)
        return self._wait_ready(name, created=existing is None, timeout_s=timeout_s, poll_s=poll_s, progress=progress)

    def _send(self, what: str, call: Callable[..., Any], *args: Any) -> Any:
        """A create or patch; the API server's (or KServe's webhook's) refusal as one line."""
        from kubernetes.client.exceptions import ApiException

        try:
            return call(*args)
        except ApiException as err:
            raise ChimlError(f"the cluster refused to {what}: {api_error_message(err)}") from None

    def _wait_ready(self, name: str, created: bool, timeout_s: float, poll_s: float, progress: Progress) -> Endpoint:
        deadline = time.monotonic() + timeout_s
        last = ""
        while True:
            obj = self.api.get_isvc(self.namespace, name)
            if obj is None:
                raise ChimlError(f"endpoint {name} disappeared while deploying")
            ready, detail = _ready_condition(obj)
            if ready:
                return self._to_endpoint(obj)  # status "ready"
            if detail != last:
                progress(f"endpoint {name}: {detail}")
                last = detail
            if time.monotonic() >= deadline:
                events = self.api.warning_events(self.namespace, limit=5)
                if created:
                    self.api.delete_isvc(self.namespace, name)
                raise ChimlError(
                    f"endpoint {name} did not become ready within {timeout_s:.0f}s: {detail}"
                    + (" (deleted again)" if created else ""),
                    hint="; ".join(events) if events else "see `kubectl -n "
                    f"{self.namespace} describe inferenceservice {name}`",
                )
            time.sleep(poll_s)

    def list(self) -> list[Endpoint]:
        return [self._to_endpoint(o) for o in self.api.list_isvc(self.namespace, f"{MANAGED_LABEL}=chiml")]

    def get(self, name: str) -> Endpoint:
        obj = self.api.get_isvc(self.namespace, name)
        if obj is None:
            raise NotFoundError(f"no endpoint named {name!r}", hint="`chiml endpoints list` shows the deployed ones")
        # the HPA's decisions, as `kubectl describe hpa` shows them
        events = [
            {"time": e["time"], "why": e["message"], **_sizes(e["message"])}
            for e in self.api.events_about(self.namespace, "HorizontalPodAutoscaler", f"{name}-predictor")
            if e["reason"] == "SuccessfulRescale"
        ]
        return self._to_endpoint(obj, events)

    def scale(
        self,
        name: str,
        replicas: int | None = None,
        *,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        scale_metric: str | None = None,
        scale_target: int | None = None,
        progress: Progress = silent,
    ) -> Endpoint:
        scaling = self._scaling(replicas, min_replicas, max_replicas, scale_metric, scale_target)
        if scaling is None:
            raise InvalidInputError("give a number of replicas, or --min-replicas/--max-replicas")
        self.get(name)  # a clear error for an unknown name
        predictor: dict[str, Any] = {key: None for key in _OPTIONAL_PREDICTOR[:2]}
        predictor.update(_predictor_scaling(scaling))
        progress(f"scaling InferenceService {self.namespace}/{name}")
        self._send(f"scale InferenceService {name}", self.api.patch_isvc, self.namespace, name,
                   {"spec": {"predictor": predictor}})
        return self.get(name)

    def delete(self, name: str) -> None:
        if not self.api.delete_isvc(self.namespace, name):
            raise NotFoundError(f"no endpoint named {name!r}")

    def url(self, name: str) -> str:
        endpoint = self.get(name)
        return endpoint.url or self._url_for(name)

    def auth(self) -> tuple[str, str] | None:
        """(user, token) a client sends as basic auth to reach an endpoint through the ingress."""
        secret = self.api.read_secret(self.namespace, INFERENCE_AUTH_SECRET)
        if not secret:
            return None
        return secret.get("username", "chiml"), secret.get("token", "")


def _predictor_scaling(scaling: Scaling) -> dict[str, Any]:
    fields: dict[str, Any] = {"minReplicas": scaling.min_replicas, "maxReplicas": scaling.max_replicas}
    if scaling.autoscaled:
        fields["scaleMetric"] = scaling.metric or "cpu"
        if scaling.target is not None:
            fields["scaleTarget"] = scaling.target
    return fields


def _merge_patch_of(existing: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``existing`` into ``body`` for the fields chiml owns."""
    predictor = dict(body["spec"]["predictor"])
    old_predictor = existing.get("spec", {}).get("predictor", {})
    for key in _OPTIONAL_PREDICTOR:
        if key in old_predictor and key not in predictor:
            predictor[key] = None
    model = dict(predictor["model"])
    if "args" in old_predictor.get("model", {}) and "args" not in model:
        model["args"] = None
    predictor["model"] = model
    return {"metadata": {"labels": body["metadata"]["labels"], "annotations": body["metadata"]["annotations"]},
            "spec": {"predictor": predictor}}


def _sizes(message: str) -> dict[str, Any]:
    """'New size: 3; reason: ...' (the HPA's SuccessfulRescale message) -> {"to": 3}."""
    match = re.search(r"New size: (\d+)", message)
    return {"to": int(match[1])} if match else {}


def _is_candidate(name: str) -> bool:
    try:
        from chiml.optimize.candidates import CANDIDATES
    except ImportError:
        return False
    return name in CANDIDATES

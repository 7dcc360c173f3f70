"""Fakes of the kubernetes client's API objects (the Kubernetes API boundary).

They behave like the real CoreV1Api / CustomObjectsApi against an API server: model objects
(V1Secret, CoreV1Event, ...) for core resources and plain dicts for custom objects; Secret
`stringData` is stored base64-encoded under `data`; missing objects raise ApiException(404)
and duplicates ApiException(409) with the API server's Status body; PATCH of a custom object
with a dict body is a JSON merge patch (what the client sends for a dict), where null deletes.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kubernetes.client import (
    CoreV1Event,
    V1Namespace,
    V1Node,
    V1NodeStatus,
    V1ObjectMeta,
    V1ObjectReference,
    V1Pod,
    V1PodCondition,
    V1PodStatus,
    V1Secret,
)
from kubernetes.client.exceptions import ApiException

from chiml.cluster import ClusterDescription
from chiml.kube.values import RenderContext, load_values


def api_exception(status: int, reason: str, message: str) -> ApiException:
    err = ApiException(status=status, reason=reason)
    err.body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                           "reason": reason, "code": status})
    return err


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeCoreV1Api:
    def __init__(self) -> None:
        self.namespaces: dict[str, V1Namespace] = {}
        self.secrets: dict[tuple[str, str], V1Secret] = {}
        self.events: dict[str, list[CoreV1Event]] = {}
        self.nodes: list[V1Node] = []
        self.pods: dict[str, list[V1Pod]] = {}
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.job_pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.created_config_maps: list[dict[str, Any]] = []  # every ConfigMap accepted, for inspection
        self.cluster: FakeJobCluster | None = None
        self.claims: dict[tuple[str, str], tuple[str, str] | None] = {}  # (namespace, name) -> owner (kind, name)
        self.calls: list[str] = []

    # namespaces
    def create_namespace(self, body: V1Namespace) -> V1Namespace:
        self.calls.append(f"create_namespace {body.metadata.name}")
        if body.metadata.name in self.namespaces:
            raise api_exception(409, "AlreadyExists", f'namespaces "{body.metadata.name}" already exists')
        self.namespaces[body.metadata.name] = body
        return body

    # secrets
    def read_namespaced_secret(self, name: str, namespace: str) -> V1Secret:
        self.calls.append(f"read_secret {namespace}/{name}")
        try:
            return copy.deepcopy(self.secrets[(namespace, name)])
        except KeyError:
            raise api_exception(404, "NotFound", f'secrets "{name}" not found') from None

    def create_namespaced_secret(self, namespace: str, body: V1Secret) -> V1Secret:
        name = body.metadata.name
        self.calls.append(f"create_secret {namespace}/{name}")
        if namespace not in self.namespaces:
            raise api_exception(404, "NotFound", f'namespaces "{namespace}" not found')
        if (namespace, name) in self.secrets:
            raise api_exception(409, "AlreadyExists", f'secrets "{name}" already exists')
        data = dict(body.data or {})
        for key, value in (body.string_data or {}).items():
            data[key] = base64.b64encode(value.encode()).decode()
        stored = V1Secret(metadata=copy.deepcopy(body.metadata), type=body.type, data=data)
        stored.metadata.namespace = namespace
        self.secrets[(namespace, name)] = stored
        return stored

    def delete_namespaced_secret(self, name: str, namespace: str) -> Any:
        self.calls.append(f"delete_secret {namespace}/{name}")
        if self.secrets.pop((namespace, name), None) is None:
            raise api_exception(404, "NotFound", f'secrets "{name}" not found')
        return SimpleNamespace(status="Success")

    # events, nodes, pods
    def add_event(
        self, namespace: str, kind: str, name: str, reason: str, message: str, type_: str = "Warning"
    ) -> None:
        now = datetime.now(UTC)
        self.events.setdefault(namespace, []).append(
            CoreV1Event(
                metadata=V1ObjectMeta(name=f"{name}.{len(self.events.get(namespace, []))}", namespace=namespace,
                                      creation_timestamp=now),
                involved_object=V1ObjectReference(kind=kind, name=name, namespace=namespace),
                reason=reason, message=message, type=type_, last_timestamp=now,
            )
        )

    def list_namespaced_event(self, namespace: str, field_selector: str | None = None) -> Any:
        items = self.events.get(namespace, [])
        if field_selector:
            key, _, value = field_selector.partition("=")
            assert key == "type", f"fake supports type= field selectors only, got {field_selector}"
            items = [e for e in items if e.type == value]
        return SimpleNamespace(items=list(items))

    def add_node(self, name: str, labels: dict[str, str] | None = None, gpus: int = 0) -> None:
        allocatable = {"cpu": "16", "memory": "64Gi"}
        if gpus:
            allocatable["nvidia.com/gpu"] = str(gpus)
        self.nodes.append(V1Node(metadata=V1ObjectMeta(name=name, labels=labels or {}),
                                 status=V1NodeStatus(allocatable=allocatable)))

    def list_node(self) -> Any:
        return SimpleNamespace(items=list(self.nodes))

    # PersistentVolumeClaims, as the API server's garbage collector treats them: a claim with an
    # owner goes when its owner is deleted, one without (a StatefulSet's volumeClaimTemplates) stays
    def add_claim(self, namespace: str, name: str, owner: tuple[str, str] | None = None) -> None:
        self.claims[(namespace, name)] = owner

    def collect_garbage(self, namespace: str, owner: tuple[str, str]) -> None:
        """``owner`` (kind, name) was deleted: so is every claim it owns."""
        self.claims = {key: own for key, own in self.claims.items() if not (key[0] == namespace and own == owner)}

    def add_pod(self, namespace: str, name: str, labels: dict[str, str], ready: bool) -> None:
        condition = V1PodCondition(type="Ready", status="True" if ready else "False")
        self.pods.setdefault(namespace, []).append(
            V1Pod(metadata=V1ObjectMeta(name=name, namespace=namespace, labels=labels),
                  status=V1PodStatus(conditions=[condition], phase="Running"))
        )

    # ConfigMaps, and the pods of Jobs (FakeJobCluster moves them on) with their logs
    def create_namespaced_config_map(self, namespace: str, body: Any) -> Any:
        doc = _serialize(body)
        name = doc["metadata"]["name"]
        self.calls.append(f"create_config_map {namespace}/{name}")
        if namespace not in self.namespaces:
            raise api_exception(404, "NotFound", f'namespaces "{namespace}" not found')
        if (namespace, name) in self.config_maps:
            raise api_exception(409, "AlreadyExists", f'configmaps "{name}" already exists')
        _invalid("ConfigMap", name, doc)
        size = sum(len(k) + len(v) for k, v in (doc.get("data") or {}).items())
        size += sum(len(k) + len(base64.b64decode(v)) for k, v in (doc.get("binaryData") or {}).items())
        if size > CONFIG_MAP_LIMIT:
            raise api_exception(422, "Invalid", f'ConfigMap "{name}" is invalid: []: Too long: may not be more than '
                                                f"{CONFIG_MAP_LIMIT} bytes")
        doc["metadata"].update(namespace=namespace, uid=f"uid-cm-{name}")
        self.config_maps[(namespace, name)] = doc
        self.created_config_maps.append(copy.deepcopy(doc))
        return _deserialize(doc, "V1ConfigMap")

    def delete_namespaced_config_map(self, name: str, namespace: str) -> Any:
        self.calls.append(f"delete_config_map {namespace}/{name}")
        if self.config_maps.pop((namespace, name), None) is None:
            raise api_exception(404, "NotFound", f'configmaps "{name}" not found')
        return SimpleNamespace(status="Success")

    def list_namespaced_pod(self, namespace: str, label_selector: str | None = None) -> Any:
        pods = [p for p in self.pods.get(namespace, []) if _matches(p.metadata.labels or {}, label_selector)]
        for (ns, _), entry in sorted(self.job_pods.items()):
            if ns == namespace and _matches(entry["pod"]["metadata"]["labels"], label_selector):
                assert self.cluster is not None
                self.cluster.advance(entry)
                pods.append(_deserialize(entry["pod"], "V1Pod"))
        return SimpleNamespace(items=pods)

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str | None = None,
                                follow: bool = False, _preload_content: bool = True) -> Any:
        import io

        import urllib3

        entry = self.job_pods.get((namespace, name))
        if entry is None:
            raise api_exception(404, "NotFound", f'pods "{name}" not found')
        pod = entry["pod"]
        if pod["status"]["phase"] == "Pending":
            raise api_exception(400, "BadRequest", f'container "{container or "train"}" in pod "{name}" is waiting to '
                                                   "start: PodInitializing")
        assert self.cluster is not None
        data = self.cluster.script.logs.encode()
        if _preload_content:
            return data.decode()
        return urllib3.HTTPResponse(body=io.BytesIO(data), preload_content=False)


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


class FakeCustomObjectsApi:
    """Custom objects keyed by (group, version, plural, namespace, name); dicts in and out."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        self.removed_groups: set[str] = set()  # API groups whose CRDs were deleted
        self.calls: list[str] = []

    def _key(self, group: str, version: str, namespace: str, plural: str, name: str) -> tuple[str, ...]:
        if group in self.removed_groups:  # what the API server answers for a kind it no longer has
            raise api_exception(404, "NotFound", "the server could not find the requested resource")
        return (group, version, plural, namespace, name)

    def delete_crd(self, group: str) -> None:
        """The CRDs of ``group`` are deleted: the API server deletes every object of their kinds."""
        self.removed_groups.add(group)
        self.objects = {key: obj for key, obj in self.objects.items() if key[0] != group}

    def create_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                        body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self.calls.append(f"create {plural} {namespace}/{name}")
        assert body.get("apiVersion") == f"{group}/{version}", "apiVersion must match the URL"
        key = self._key(group, version, namespace, plural, name)
        if key in self.objects:
            raise api_exception(409, "AlreadyExists", f'{plural}.{group} "{name}" already exists')
        if plural == "inferenceservices":  # the CRD's schema and KServe's admission webhook
            _invalid("InferenceService", name, body)
        stored = copy.deepcopy(body)
        stored["metadata"].update(namespace=namespace, generation=1, uid=f"uid-{name}",
                                  creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                     name: str) -> dict[str, Any]:
        key = self._key(group, version, namespace, plural, name)
        if key not in self.objects:
            raise api_exception(404, "NotFound", f'{plural}.{group} "{name}" not found')
        return copy.deepcopy(self.objects[key])

    def list_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                      label_selector: str | None = None) -> dict[str, Any]:
        self._key(group, version, namespace, plural, "")  # 404 once the kind is gone
        items = [
            copy.deepcopy(obj) for (g, v, p, ns, _), obj in sorted(self.objects.items())
            if (g, v, p, ns) == (group, version, plural, namespace)
            and _matches(obj["metadata"].get("labels", {}), label_selector)
        ]
        return {"apiVersion": f"{group}/{version}", "kind": "InferenceServiceList", "items": items}

    def patch_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str,
                                       body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"patch {plural} {namespace}/{name}")
        key = self._key(group, version, namespace, plural, name)
        if key not in self.objects:
            raise api_exception(404, "NotFound", f'{plural}.{group} "{name}" not found')
        patched = _merge_patch(self.objects[key], body)
        if plural == "inferenceservices":
            _invalid("InferenceService", name, {k: v for k, v in patched.items() if k != "status"})
        if patched.get("spec") != self.objects[key].get("spec"):
            patched["metadata"]["generation"] = self.objects[key]["metadata"]["generation"] + 1
        self.objects[key] = patched
        return copy.deepcopy(patched)

    def delete_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                        name: str) -> dict[str, Any]:
        self.calls.append(f"delete {plural} {namespace}/{name}")
        key = self._key(group, version, namespace, plural, name)
        if self.objects.pop(key, None) is None:
            raise api_exception(404, "NotFound", f'{plural}.{group} "{name}" not found')
        return {"kind": "Status", "status": "Success"}

    # what the KServe controller would do: mark an InferenceService ready with its URL
    def set_isvc_ready(self, namespace: str, name: str, url: str, ready: bool = True) -> None:
        key = ("serving.kserve.io", "v1beta1", "inferenceservices", namespace, name)
        obj = self.objects[key]
        obj["status"] = {
            "url": url,
            "observedGeneration": obj["metadata"]["generation"],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "reason": None if ready else "MinimumReplicasUnavailable"}],
        }


KSERVE_VALUES = Path(__file__).resolve().parents[2] / "helm" / "values" / "kserve-resources.yaml"
GO_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def kserve_url_settings(context: RenderContext) -> tuple[str, str, str]:
    """(urlScheme, domain, domainTemplate) as KServe's controller gets them from chiml's values file."""
    gateway = load_values(KSERVE_VALUES, context)["kserve"]["controller"]["gateway"]
    return gateway["urlScheme"], gateway["domain"], gateway["domainTemplate"]


def kserve_url(context: RenderContext, name: str, namespace: str) -> str:
    """The status URL KServe writes for an InferenceService: its domain template, filled like Go's."""
    scheme, domain, template = kserve_url_settings(context)
    fields = {"Name": name, "Namespace": namespace, "IngressDomain": domain}
    return f"{scheme}://" + GO_FIELD.sub(lambda m: fields[m.group(1)], template)


def cluster_context(ingress_base_url: str = "http://203.0.113.7.nip.io", namespace: str = "chiml") -> RenderContext:
    return RenderContext.for_cluster(
        ClusterDescription("k", "https://203.0.113.7:6443", "v1.35.0", ingress_base_url=ingress_base_url), namespace
    )


class ControllerSimulatingCustomApi(FakeCustomObjectsApi):
    """Adds what the KServe controller does: an InferenceService turns Ready after N reads, with the
    URL that KServe builds from helm/values/kserve-resources.yaml for the cluster (``context``)."""

    def __init__(
        self, ready_after: int = 1, fail: set[str] | None = None, context: RenderContext | None = None
    ) -> None:
        super().__init__()
        self.ready_after = ready_after
        self.fail = fail or set()
        self.context = context or cluster_context()
        self._reads: dict[tuple[str, ...], int] = {}

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                     name: str) -> dict[str, Any]:
        key = self._key(group, version, namespace, plural, name)
        if key in self.objects and plural == "inferenceservices":
            self._reads[key] = self._reads.get(key, 0) + 1
            if self._reads[key] >= self.ready_after:
                self.set_isvc_ready(namespace, name, kserve_url(self.context, name, namespace),
                                    ready=name not in self.fail)
        return super().get_namespaced_custom_object(group, version, namespace, plural, name)


# ----------------------------------------------------------------- Jobs, their pods, logs, ConfigMaps
CONFIG_MAP_LIMIT = 1024 * 1024  # the API server's limit on a ConfigMap's data + binaryData


def _serialize(body: Any) -> dict[str, Any]:
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(body)  # type: ignore[no-any-return]


def _deserialize(data: dict[str, Any], kind: str) -> Any:
    """What the real client returns: the model object of the JSON the server sent."""
    from kubernetes.client import ApiClient

    return ApiClient()._ApiClient__deserialize(copy.deepcopy(data), kind)  # type: ignore[attr-defined]


def _invalid(kind: str, name: str, body: dict[str, Any]) -> None:
    """Reject what the API server would reject: a body that is not valid against the schema (422)."""
    from tests.kube.schemas import validate

    try:
        validate(body)
    except Exception as err:  # jsonschema / kubernetes_validate errors
        raise api_exception(422, "Invalid", f'{kind} "{name}" is invalid: {str(err).splitlines()[0]}') from None


@dataclass
class PodScript:
    """What the container of each Job pod will do, as the kubelet would report it.

    outcome: succeeded | failed (``exit_code``) | oom | evicted | deadline (activeDeadlineSeconds
    passed) | image-pull | init-failed (the last init container exits 1) | running (never ends).
    """

    outcome: str = "succeeded"
    logs: str = ""
    exit_code: int = 0


class FakeJobCluster:
    """The Job controller, scheduler and kubelet, seen through the API: a Job makes one pod that
    goes Pending -> Running -> Succeeded/Failed, one step per read of the pod (a list or get),
    with the container states and reasons the kubelet writes. A pod requesting GPUs, or with a
    node selector, stays Pending and Unschedulable unless a node of ``core.nodes`` fits."""

    def __init__(self, core: FakeCoreV1Api, script: PodScript | None = None) -> None:
        self.core = core
        self.script = script or PodScript()
        core.cluster = self

    def pod_for(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        namespace = job["metadata"]["namespace"]
        uid = job["metadata"]["uid"]
        template = job["spec"]["template"]
        labels = {**(template.get("metadata", {}).get("labels") or {}),
                  "batch.kubernetes.io/job-name": name, "job-name": name,
                  "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-{uid[-5:]}", "namespace": namespace, "labels": labels,
                         "uid": f"pod-{uid}", "creationTimestamp": _now(),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Pending"},
        }
        self.core.job_pods[(namespace, pod["metadata"]["name"])] = {"pod": pod, "step": 0, "job": job}

    def _fits(self, spec: dict[str, Any]) -> bool:
        selector = spec.get("nodeSelector") or {}
        gpus = sum(int((c.get("resources", {}).get("limits") or {}).get("nvidia.com/gpu", 0))
                   for c in spec["containers"])
        for node in self.core.nodes:
            labels = node.metadata.labels or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue
            if gpus and int((node.status.allocatable or {}).get("nvidia.com/gpu", 0)) < gpus:
                continue
            return True
        return False

    def advance(self, entry: dict[str, Any]) -> None:
        pod, job = entry["pod"], entry["job"]
        status = pod["status"]
        if status["phase"] in ("Succeeded", "Failed"):
            return
        image = pod["spec"]["containers"][0]["image"]
        if not self._fits(pod["spec"]):
            status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": f"0/{len(self.core.nodes)} nodes are available: "
                                                f"{len(self.core.nodes)} Insufficient nvidia.com/gpu."}]
            return
        entry["step"] += 1
        outcome = self.script.outcome
        if outcome == "image-pull":
            reason = "ErrImagePull" if entry["step"] == 1 else "ImagePullBackOff"
            status["initContainerStatuses"] = [_container_status("unpack", image, waiting=(
                reason, f'Back-off pulling image "{image}"' if reason == "ImagePullBackOff"
                else f'failed to pull and unpack image "{image}": not found'))]
            return
        if outcome == "init-failed":  # the last init container exits non-zero: the pod fails, train never starts
            inits = pod["spec"]["initContainers"]
            status["phase"] = "Failed"
            status["initContainerStatuses"] = [
                _container_status(c["name"], image, terminated=(0 if c is not inits[-1] else 1, "Error")) for c in inits
            ]
            status["containerStatuses"] = [_container_status("train", image, waiting=("PodInitializing", None))]
            why = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
            job["status"] = {"failed": 1, "conditions": [_condition("FailureTarget", *why), _condition("Failed", *why)]}
            return
        if entry["step"] == 1:
            status["containerStatuses"] = [_container_status("train", image, waiting=("PodInitializing", None))]
            return
        if entry["step"] == 2 or (outcome == "running"):
            status["phase"] = "Running"
            status["containerStatuses"] = [_container_status("train", image, running=True)]
            return
        if outcome == "succeeded":
            status["phase"] = "Succeeded"
            status["containerStatuses"] = [_container_status("train", image, terminated=(0, "Completed"))]
        elif outcome == "deadline":  # activeDeadlineSeconds passed: the Job controller kills the pod
            status.update(phase="Failed", reason="DeadlineExceeded",
                          message="Pod was active on the node longer than the specified deadline")
            status["containerStatuses"] = [_container_status("train", image, terminated=(143, "Error"))]
        elif outcome == "evicted":
            status.update(phase="Failed", reason="Evicted",
                          message="The node was low on resource: memory. Threshold quantity: 100Mi.")
            gone = _container_status("train", image, terminated=(137, "ContainerStatusUnknown"))
            status["containerStatuses"] = [gone]
        else:
            code, reason = (137, "OOMKilled") if outcome == "oom" else (self.script.exit_code, "Error")
            status["phase"] = "Failed"
            status["containerStatuses"] = [_container_status("train", image, terminated=(code, reason))]
        if status["phase"] == "Succeeded":
            job["status"] = {"succeeded": 1, "conditions": [_condition("SuccessCriteriaMet"), _condition("Complete")]}
        else:
            why = (("DeadlineExceeded", "Job was active longer than specified deadline") if outcome == "deadline"
                   else ("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
            job["status"] = {"failed": 1, "conditions": [_condition("FailureTarget", *why), _condition("Failed", *why)]}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(type_: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {"type": type_, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": _now(), "lastProbeTime": _now()}


def _container_status(name: str, image: str, waiting: tuple[str, str | None] | None = None, running: bool = False,
                      terminated: tuple[int, str] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if waiting:
        state["waiting"] = {"reason": waiting[0], **({"message": waiting[1]} if waiting[1] else {})}
    if running:
        state["running"] = {"startedAt": _now()}
    if terminated:
        state["terminated"] = {"exitCode": terminated[0], "reason": terminated[1], "startedAt": _now(),
                               "finishedAt": _now()}
    return {"name": name, "image": image, "imageID": "" if waiting else f"{image}@sha256:{'0' * 64}",
            "ready": running, "restartCount": 0, "started": running, "state": state}


class FakeBatchV1Api:
    """batch/v1 Jobs: schema-checked on create; delete honours propagationPolicy, whose API default
    for Jobs is to orphan the pods."""

    def __init__(self, core: FakeCoreV1Api, script: PodScript | None = None) -> None:
        self.core = core
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []  # every Job accepted, for inspection
        self.cluster = FakeJobCluster(core, script)
        self.calls: list[str] = []

    def create_namespaced_job(self, namespace: str, body: Any) -> Any:
        doc = _serialize(body)
        name = doc["metadata"]["name"]
        self.calls.append(f"create_job {namespace}/{name}")
        if namespace not in self.core.namespaces:
            raise api_exception(404, "NotFound", f'namespaces "{namespace}" not found')
        if (namespace, name) in self.jobs:
            raise api_exception(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
        _invalid("Job", name, doc)
        doc["metadata"].update(namespace=namespace, uid=f"uid-{name}", creationTimestamp=_now())
        doc["status"] = {}
        self.jobs[(namespace, name)] = doc
        self.created.append(copy.deepcopy(doc))
        self.cluster.pod_for(doc)
        return _deserialize(doc, "V1Job")

    def read_namespaced_job(self, name: str, namespace: str) -> Any:
        if (namespace, name) not in self.jobs:
            raise api_exception(404, "NotFound", f'jobs.batch "{name}" not found')
        return _deserialize(self.jobs[(namespace, name)], "V1Job")

    def delete_namespaced_job(self, name: str, namespace: str, propagation_policy: str | None = None,
                              body: Any = None) -> Any:
        self.calls.append(f"delete_job {namespace}/{name} {propagation_policy}")
        job = self.jobs.pop((namespace, name), None)
        if job is None:
            raise api_exception(404, "NotFound", f'jobs.batch "{name}" not found')
        if propagation_policy in ("Background", "Foreground"):  # the garbage collector removes dependents
            uid = job["metadata"]["uid"]
            for key, entry in list(self.core.job_pods.items()):
                if any(o["uid"] == uid for o in entry["pod"]["metadata"]["ownerReferences"]):
                    del self.core.job_pods[key]
            for key, cm in list(self.core.config_maps.items()):
                if any(o["uid"] == uid for o in cm["metadata"].get("ownerReferences") or []):
                    del self.core.config_maps[key]
        return SimpleNamespace(status="Success")

"""Fakes of the kubernetes client's API objects (the Kubernetes API boundary).

They behave like the real CoreV1Api / CustomObjectsApi against an API server: model objects
(V1Secret, CoreV1Event, ...) for core resources and plain dicts for custom objects; Secret
`stringData` is stored base64-encoded under `data`; missing objects raise ApiException(404)
and duplicates ApiException(409) with the API server's Status body; PATCH of a custom object
with a dict body is a JSON merge patch (what the client sends for a dict), where null deletes.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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
        if self.cluster is not None:
            self.cluster.sync_all()
            for (ns, _), entry in sorted(self.job_pods.items()):
                if ns == namespace and _matches(entry["pod"]["metadata"]["labels"], label_selector):
                    pods.append(self.cluster.pod_model(entry))
        return SimpleNamespace(items=pods)

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str | None = None,
                                follow: bool = False, _preload_content: bool = True, tail_lines: int | None = None,
                                ) -> Any:
        entry = self.job_pods.get((namespace, name))
        if entry is None or self.cluster is None:
            raise api_exception(404, "NotFound", f'pods "{name}" not found')
        return self.cluster.log(entry, container, follow, _preload_content)


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
    passed) | image-pull | init-failed (the last init container exits 1) | running (never ends) |
    process: the pod's containers really run, as local processes (:class:`ProcessKubelet`).
    """

    outcome: str = "succeeded"
    logs: str = ""
    exit_code: int = 0


class FakeJobCluster:
    """The Job controller, scheduler and kubelet, seen through the API.

    Controller: a Job gets ``parallelism`` pods (``completions`` of them in all; an Indexed Job
    one per index, with the index in a label, an annotation and JOB_COMPLETION_INDEX); a failed
    pod is replaced (same index) until more than ``backoffLimit`` have failed, or at once fails
    the Job when a ``podFailurePolicy`` FailJob rule matches its exit code; a failed Job's running
    pods are deleted; status counts, ``completedIndexes`` and the conditions the controller writes
    (SuccessCriteriaMet/Complete, FailureTarget/Failed with its reason).
    Scheduler: a pod requesting GPUs, or with a node selector, stays Pending and Unschedulable
    unless a node of ``core.nodes`` fits.
    Kubelet: scripted pods go Pending -> Running -> Succeeded/Failed, one step per read, with the
    container states and reasons the kubelet writes; ``process`` pods really run (see
    :class:`ProcessKubelet`).
    """

    def __init__(self, core: FakeCoreV1Api, jobs: dict[tuple[str, str], dict[str, Any]],
                 script: PodScript | None = None, services: dict[str, str] | None = None,
                 grace_s: float = 20.0) -> None:
        self.core = core
        self.jobs = jobs
        self.script = script or PodScript()
        self.kubelet = ProcessKubelet(core, services or {}, grace_s)
        self._serial = 0
        core.cluster = self

    # ----------------------------------------------------------------- the Job controller
    def create_pods(self, job: dict[str, Any]) -> None:
        spec = job["spec"]
        if spec.get("completionMode") == "Indexed":
            for index in range(min(spec.get("parallelism", 1), spec["completions"])):
                self._pod_for(job, index)
        else:
            for _ in range(min(spec.get("parallelism", 1), spec.get("completions", 1))):
                self._pod_for(job, None)
        job["status"] = {"active": len(self.pods_of(job)), "startTime": _now()}

    def pods_of(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        uid = job["metadata"]["uid"]
        return [e for e in self.core.job_pods.values() if e["job"]["metadata"]["uid"] == uid]

    def _pod_for(self, job: dict[str, Any], index: int | None) -> None:
        name = job["metadata"]["name"]
        namespace = job["metadata"]["namespace"]
        uid = job["metadata"]["uid"]
        template = job["spec"]["template"]
        labels = {**(template.get("metadata", {}).get("labels") or {}),
                  "batch.kubernetes.io/job-name": name, "job-name": name,
                  "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}
        annotations: dict[str, str] = {}
        spec = copy.deepcopy(template["spec"])
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
            ref = {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                container.setdefault("env", []).insert(0, {"name": "JOB_COMPLETION_INDEX", "valueFrom": ref})
        self._serial += 1
        pod_name = f"{name}-{'' if index is None else f'{index}-'}{self._serial:05x}"
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": namespace, "labels": labels, "annotations": annotations,
                         "uid": f"pod-{uid}-{self._serial}", "creationTimestamp": _now(),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": spec,
            "status": {"phase": "Pending"},
        }
        self.core.job_pods[(namespace, pod_name)] = {"pod": pod, "step": 0, "job": job, "index": index}

    def sync_all(self) -> None:
        for job in list(self.jobs.values()):
            self.sync(job)

    def sync(self, job: dict[str, Any]) -> None:
        """One pass of the controller over ``job`` (and of the kubelet over its pods)."""
        if _condition_true(job, "Complete") or _condition_true(job, "Failed"):
            return
        entries = self.pods_of(job)
        for entry in entries:
            self._advance(entry)
        spec, status = job["spec"], job["status"]
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions", 1)
        failed = [e for e in entries if e["pod"]["status"]["phase"] == "Failed"]
        succeeded = [e for e in entries if e["pod"]["status"]["phase"] == "Succeeded"]
        active = [e for e in entries if e["pod"]["status"]["phase"] in ("Pending", "Running")]
        done = sorted({e["index"] for e in succeeded}) if indexed else list(range(len(succeeded)))
        status.update(active=len(active), succeeded=len(succeeded), failed=len(failed),
                      ready=sum(e["pod"]["status"]["phase"] == "Running" for e in active))
        if indexed and done:
            status["completedIndexes"] = ",".join(map(str, done))
        why = self._failure(job, failed)
        if why is not None:
            for entry in active:  # the controller deletes a failed Job's running pods
                self.remove_pod(entry)
            status["active"] = 0
            job["status"]["conditions"] = [_condition("FailureTarget", *why), _condition("Failed", *why)]
            return
        if len(done) >= completions:
            status["completionTime"] = _now()
            job["status"]["conditions"] = [_condition("SuccessCriteriaMet"), _condition("Complete")]
            return
        # replace failed pods: an Indexed Job per index, a plain one up to its completions
        if indexed:
            covered = {e["index"] for e in active} | set(done)
            room = max(0, spec.get("parallelism", 1) - len(active))
            for index in [i for i in range(completions) if i not in covered][:room]:
                self._pod_for(job, index)
        elif failed and len(active) + len(succeeded) < min(spec.get("parallelism", 1), completions):
            self._pod_for(job, None)

    def _failure(self, job: dict[str, Any], failed: list[dict[str, Any]]) -> tuple[str, str] | None:
        for entry in failed:
            if entry["pod"]["status"].get("reason") == "DeadlineExceeded":
                return "DeadlineExceeded", "Job was active longer than specified deadline"
        for rule in (job["spec"].get("podFailurePolicy") or {}).get("rules", []):
            codes = rule.get("onExitCodes") or {}
            for entry in failed:
                for cstatus in entry["pod"]["status"].get("containerStatuses") or []:
                    code = ((cstatus.get("state") or {}).get("terminated") or {}).get("exitCode")
                    if (rule["action"] == "FailJob" and cstatus["name"] == codes.get("containerName", cstatus["name"])
                            and code is not None and (code in codes["values"]) == (codes["operator"] == "In")):
                        pod = entry["pod"]["metadata"]
                        return "PodFailurePolicy", (f"Container {cstatus['name']} for pod {pod['namespace']}/"
                                                    f"{pod['name']} failed with exit code {code} matching FailJob "
                                                    "rule at index 0")
        if len(failed) > job["spec"].get("backoffLimit", 6):
            return "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        return None

    def remove_pod(self, entry: dict[str, Any]) -> None:
        """Delete a pod: its processes get SIGTERM, then SIGKILL after the grace period."""
        self.kubelet.terminate(entry)
        pod = entry["pod"]["metadata"]
        self.core.job_pods.pop((pod["namespace"], pod["name"]), None)

    def pod_model(self, entry: dict[str, Any]) -> Any:
        with self.kubelet.lock:
            return _deserialize(entry["pod"], "V1Pod")

    # ----------------------------------------------------------------- scheduler and kubelet
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

    def _advance(self, entry: dict[str, Any]) -> None:
        pod = entry["pod"]
        status = pod["status"]
        if status["phase"] in ("Succeeded", "Failed"):
            return
        if entry.get("started"):
            self.kubelet.refresh(entry)
            return
        if not self._fits(pod["spec"]):
            status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": f"0/{len(self.core.nodes)} nodes are available: "
                                                f"{len(self.core.nodes)} Insufficient nvidia.com/gpu."}]
            return
        status["conditions"] = [{"type": "PodScheduled", "status": "True"}]
        if self.script.outcome == "process":
            entry["started"] = True
            self.kubelet.start(entry)
            return
        self._scripted(entry)

    def _scripted(self, entry: dict[str, Any]) -> None:
        pod = entry["pod"]
        status = pod["status"]
        entry["step"] += 1
        image = pod["spec"]["containers"][0]["image"]
        container = pod["spec"]["containers"][0]["name"]
        outcome = self.script.outcome
        if outcome == "image-pull":
            reason = "ErrImagePull" if entry["step"] == 1 else "ImagePullBackOff"
            first = (pod["spec"].get("initContainers") or pod["spec"]["containers"])[0]["name"]
            key = "initContainerStatuses" if pod["spec"].get("initContainers") else "containerStatuses"
            status[key] = [_container_status(first, image, waiting=(
                reason, f'Back-off pulling image "{image}"' if reason == "ImagePullBackOff"
                else f'failed to pull and unpack image "{image}": not found'))]
            return
        if outcome == "init-failed":  # the last init container exits non-zero: the pod fails, the main never starts
            inits = pod["spec"]["initContainers"]
            status["phase"] = "Failed"
            status["initContainerStatuses"] = [
                _container_status(c["name"], image, terminated=(0 if c is not inits[-1] else 1, "Error")) for c in inits
            ]
            status["containerStatuses"] = [_container_status(container, image, waiting=("PodInitializing", None))]
            return
        if entry["step"] == 1:
            status["containerStatuses"] = [_container_status(container, image, waiting=("PodInitializing", None))]
            return
        if entry["step"] == 2 or (outcome == "running"):
            status["phase"] = "Running"
            status["containerStatuses"] = [_container_status(container, image, running=True)]
            return
        if outcome == "succeeded":
            status["phase"] = "Succeeded"
            status["containerStatuses"] = [_container_status(container, image, terminated=(0, "Completed"))]
        elif outcome == "deadline":  # activeDeadlineSeconds passed: the Job controller kills the pod
            status.update(phase="Failed", reason="DeadlineExceeded",
                          message="Pod was active on the node longer than the specified deadline")
            status["containerStatuses"] = [_container_status(container, image, terminated=(143, "Error"))]
        elif outcome == "evicted":
            status.update(phase="Failed", reason="Evicted",
                          message="The node was low on resource: memory. Threshold quantity: 100Mi.")
            gone = _container_status(container, image, terminated=(137, "ContainerStatusUnknown"))
            status["containerStatuses"] = [gone]
        else:
            code, reason = (137, "OOMKilled") if outcome == "oom" else (self.script.exit_code, "Error")
            status["phase"] = "Failed"
            status["containerStatuses"] = [_container_status(container, image, terminated=(code, reason))]

    def log(self, entry: dict[str, Any], container: str | None, follow: bool, preload: bool) -> Any:
        import urllib3

        pod = entry["pod"]
        name = container or pod["spec"]["containers"][0]["name"]
        if self.script.outcome == "process":
            reader = self.kubelet.log_reader(entry, name, follow)
            if reader is None:
                raise api_exception(400, "BadRequest", f'container "{name}" in pod "{pod["metadata"]["name"]}" is '
                                                       "waiting to start: PodInitializing")
        else:
            if pod["status"]["phase"] == "Pending":
                raise api_exception(400, "BadRequest", f'container "{name}" in pod "{pod["metadata"]["name"]}" is '
                                                       "waiting to start: PodInitializing")
            reader = io.BytesIO(self.script.logs.encode())
        if preload:
            return reader.read().decode()
        return urllib3.HTTPResponse(body=reader, preload_content=False)


def _condition_true(job: dict[str, Any], type_: str) -> bool:
    return any(c["type"] == type_ and c["status"] == "True" for c in (job.get("status") or {}).get("conditions") or [])


# ----------------------------------------------------------------- a kubelet whose containers are processes
class _TailReader(io.RawIOBase):
    """A container log followed like ``kubectl logs -f``: blocks for new lines until the container exits."""

    def __init__(self, path: Path, running: Callable[[], bool]) -> None:
        self.handle = path.open("rb")
        self.running = running

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        return self.read(size if size > 0 else 65536) or b""

    def readinto(self, buffer: Any) -> int:
        while True:
            data = self.handle.read(len(buffer))
            if data:
                buffer[: len(data)] = data
                return len(data)
            if not self.running():
                data = self.handle.read(len(buffer))  # what was written just before the exit
                buffer[: len(data)] = data
                return len(data)
            time.sleep(0.05)

    def close(self) -> None:
        self.handle.close()
        super().close()


class ProcessKubelet:
    """Runs a pod's containers as local processes, the way a kubelet runs them in containers.

    Honoured: init containers to completion in order, then the container; ``command`` (``python``
    is this interpreter: the images' Python runs chiml's code, which this checkout holds) and
    ``args``; ``workingDir``; ``env`` values with ``$(VAR)`` expansion, ``secretKeyRef`` (a missing
    Secret or key leaves the container waiting with CreateContainerConfigError, as the kubelet
    does) and ``fieldRef`` to the pod's annotations, labels, name and namespace; volumes
    (``emptyDir`` a fresh folder, ``configMap`` its data and binaryData as files) mounted by
    rewriting mount paths in command, args, env and working directory; the log of each container,
    followed while it runs; the termination message (``FallbackToLogsOnError``: the log's last
    lines when it fails); deletion as SIGTERM to the container's process group, SIGKILL after the
    grace period. ``services`` is the cluster's DNS and Service routing: an in-cluster
    ``host:port`` the test serves locally, replaced in env values and args.
    """

    def __init__(self, core: FakeCoreV1Api, services: dict[str, str], grace_s: float) -> None:
        self.core = core
        self.services = services
        self.grace_s = grace_s
        self.lock = threading.RLock()
        self.root = Path(tempfile.mkdtemp(prefix="chiml-fake-kubelet-"))

    # ----------------------------------------------------------------- lifecycle
    def start(self, entry: dict[str, Any]) -> None:
        entry["dir"] = Path(tempfile.mkdtemp(prefix=entry["pod"]["metadata"]["name"] + "-", dir=self.root))
        entry["processes"] = {}
        entry["thread"] = threading.Thread(target=self._run_pod, args=(entry,), daemon=True)
        entry["thread"].start()

    def refresh(self, entry: dict[str, Any]) -> None:
        """Nothing to do: the pod's thread writes its status as the processes move on."""

    def kill(self, entry: dict[str, Any], sig: int = signal.SIGKILL, oom: bool = False) -> None:
        """What a test does to a running container (a crashed worker, the OOM killer)."""
        entry["oom"] = oom
        process = self._main_process(entry)
        assert process is not None, "the container is not running"
        os.killpg(process.pid, sig)
        process.wait(timeout=30)
        entry["thread"].join(timeout=30)

    def terminate(self, entry: dict[str, Any]) -> None:
        thread = entry.get("thread")
        if thread is None:
            return
        entry["deleted"] = True
        # the pod's grace period, capped by grace_s (20 s): a worker that fails its trial on SIGTERM
        # took over 5 s on a loaded 2-core CI machine; a process that ignores SIGTERM costs the cap
        grace = min(float(entry["pod"]["spec"].get("terminationGracePeriodSeconds", 30)), self.grace_s)
        for process in list(entry["processes"].values()):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in list(entry["processes"].values()):
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        thread.join(timeout=30)

    def _main_process(self, entry: dict[str, Any]) -> subprocess.Popen[bytes] | None:
        return entry.get("processes", {}).get(entry["pod"]["spec"]["containers"][0]["name"])

    # ----------------------------------------------------------------- a pod, in its own thread
    def _set(self, entry: dict[str, Any], **changes: Any) -> None:
        with self.lock:
            entry["pod"]["status"].update(changes)

    def _run_pod(self, entry: dict[str, Any]) -> None:
        pod = entry["pod"]
        spec = pod["spec"]
        main = spec["containers"][0]
        image = main["image"]
        volumes = self._volumes(entry)
        inits = spec.get("initContainers") or []
        waiting_main = [_container_status(main["name"], image, waiting=("PodInitializing", None))]
        if inits:
            self._set(entry, containerStatuses=waiting_main)
        done: list[dict[str, Any]] = []
        for init in inits:
            running = _container_status(init["name"], image, running=True)
            (entry["dir"] / f"{init['name']}.log").touch()
            self._set(entry, initContainerStatuses=[*done, running])
            code, message = self._run_container(entry, init, volumes)
            if code is None:
                return
            done.append(_container_status(init["name"], image, terminated=(code, "Completed" if code == 0 else "Error"),
                                          message=message))
            self._set(entry, initContainerStatuses=list(done))
            if code != 0:
                self._set(entry, phase="Failed", containerStatuses=waiting_main)
                return
        (entry["dir"] / f"{main['name']}.log").touch()  # a running container has a log, empty or not
        self._set(entry, phase="Running", containerStatuses=[_container_status(main["name"], image, running=True)])
        code, message = self._run_container(entry, main, volumes)
        if code is None:
            return
        reason = "Completed" if code == 0 else "OOMKilled" if entry.get("oom") else "Error"
        self._set(entry, phase="Succeeded" if code == 0 else "Failed",
                  containerStatuses=[_container_status(main["name"], image, terminated=(code, reason),
                                                       message=message)])

    def _run_container(self, entry: dict[str, Any], container: dict[str, Any],
                       volumes: dict[str, Path]) -> tuple[int | None, str | None]:
        """(exit code, termination message); None when the container never started."""
        if entry.get("deleted"):
            return None, None
        try:
            env = self._env(entry, container)
        except _Waiting as waiting:
            key = "containerStatuses" if container in entry["pod"]["spec"]["containers"] else "initContainerStatuses"
            self._set(entry, **{key: [_container_status(container["name"], container["image"],
                                                        waiting=("CreateContainerConfigError", str(waiting)))]})
            return None, None
        mounts = {m["mountPath"]: volumes[m["name"]] / m.get("subPath", "") for m in container.get("volumeMounts", [])}
        rewrite = _path_rewriter(mounts, self.services)
        command = [rewrite(part) for part in [*container.get("command", []), *container.get("args", [])]]
        if command and command[0] == "python":
            command[0] = sys.executable
        env = {key: rewrite(value) for key, value in env.items()}
        env.setdefault("HOME", str(entry["dir"]))
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        cwd = rewrite(container.get("workingDir") or str(entry["dir"]))
        log = entry["dir"] / f"{container['name']}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        entry["processes"][container["name"]] = process
        code = process.wait()
        if code < 0:  # killed by a signal: a container's exit status is 128 + N
            code = 128 - code
        message = None
        if code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-80:]
            message = "\n".join(lines)[-2048:]
        return code, message

    def _volumes(self, entry: dict[str, Any]) -> dict[str, Path]:
        dirs: dict[str, Path] = {}
        for volume in entry["pod"]["spec"].get("volumes", []):
            path = entry["dir"] / "volumes" / volume["name"]
            path.mkdir(parents=True)
            if "configMap" in volume:
                cm = self.core.config_maps.get((entry["pod"]["metadata"]["namespace"], volume["configMap"]["name"]))
                for key, text in ((cm or {}).get("data") or {}).items():
                    (path / key).write_text(text)
                for key, data in ((cm or {}).get("binaryData") or {}).items():
                    (path / key).write_bytes(base64.b64decode(data))
            dirs[volume["name"]] = path
        return dirs

    def _env(self, entry: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        pod = entry["pod"]
        env: dict[str, str] = {}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), item["value"])
                continue
            source = item.get("valueFrom") or {}
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = self.core.secrets.get((pod["metadata"]["namespace"], ref["name"]))
                if secret is None:
                    raise _Waiting(f'secret "{ref["name"]}" not found')
                if ref["key"] not in (secret.data or {}):
                    raise _Waiting(f"couldn't find key {ref['key']} in Secret {pod['metadata']['namespace']}/"
                                   f"{ref['name']}")
                env[item["name"]] = base64.b64decode(secret.data[ref["key"]]).decode()
            elif "fieldRef" in source:
                env[item["name"]] = _field(pod, source["fieldRef"]["fieldPath"])
        return env

    def log_reader(self, entry: dict[str, Any], container: str, follow: bool) -> io.RawIOBase | None:
        """The container's log (None before it started); followed until the container terminates."""
        path = entry.get("dir", Path("/nonexistent")) / f"{container}.log"
        if self._state(entry, container) in (None, "waiting") or not path.exists():
            return None
        if not follow:
            return io.BytesIO(path.read_bytes())
        return _TailReader(path, lambda: self._state(entry, container) != "terminated" and entry in
                           self.core.job_pods.values())

    def _state(self, entry: dict[str, Any], container: str) -> str | None:
        with self.lock:
            status = entry["pod"]["status"]
            for item in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
                if item["name"] == container:
                    return next(iter(item["state"]), None)
        return None


class _Waiting(Exception):
    """The container cannot be created (the kubelet keeps it waiting)."""


VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
FIELD = re.compile(r"metadata\.(annotations|labels)\['([^']+)'\]")


def _field(pod: dict[str, Any], path: str) -> str:
    match = FIELD.fullmatch(path)
    if match:
        return str(pod["metadata"].get(match.group(1), {}).get(match.group(2), ""))
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(pod["metadata"][path.split(".")[1]])
    raise AssertionError(f"fake kubelet: fieldRef {path} not supported")


def _path_rewriter(mounts: dict[str, Path], services: dict[str, str]) -> Callable[[str], str]:
    """Replace mount paths (at path boundaries) and in-cluster service addresses, in one pass each,
    so a replaced path is never rewritten again."""
    paths = sorted(mounts, key=len, reverse=True)
    pattern = re.compile("(?<![\\w.-])(" + "|".join(re.escape(p) for p in paths) + ")(?=/|$|[^\\w.-])") if paths \
        else None
    hosts = re.compile("|".join(re.escape(h) for h in sorted(services, key=len, reverse=True))) if services else None

    def rewrite(text: str) -> str:
        if pattern is not None:
            text = pattern.sub(lambda m: str(mounts[m.group(1)]), text)
        if hosts is not None:
            text = hosts.sub(lambda m: services[m.group(0)], text)
        return text

    return rewrite


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(type_: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {"type": type_, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": _now(), "lastProbeTime": _now()}


def _container_status(name: str, image: str, waiting: tuple[str, str | None] | None = None, running: bool = False,
                      terminated: tuple[int, str] | None = None, message: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if waiting:
        state["waiting"] = {"reason": waiting[0], **({"message": waiting[1]} if waiting[1] else {})}
    if running:
        state["running"] = {"startedAt": _now()}
    if terminated:
        state["terminated"] = {"exitCode": terminated[0], "reason": terminated[1], "startedAt": _now(),
                               "finishedAt": _now(), **({"message": message} if message else {})}
    return {"name": name, "image": image, "imageID": "" if waiting else f"{image}@sha256:{'0' * 64}",
            "ready": running, "restartCount": 0, "started": running, "state": state}


class FakeBatchV1Api:
    """batch/v1 Jobs: schema-checked on create; delete honours propagationPolicy, whose API default
    for Jobs is to orphan the pods."""

    def __init__(self, core: FakeCoreV1Api, script: PodScript | None = None, services: dict[str, str] | None = None,
                 grace_s: float = 20.0) -> None:
        self.core = core
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []  # every Job accepted, for inspection
        self.cluster = FakeJobCluster(core, self.jobs, script, services, grace_s)
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
        self.cluster.create_pods(doc)
        return _deserialize(doc, "V1Job")

    def read_namespaced_job(self, name: str, namespace: str) -> Any:
        if (namespace, name) not in self.jobs:
            raise api_exception(404, "NotFound", f'jobs.batch "{name}" not found')
        self.cluster.sync(self.jobs[(namespace, name)])
        return _deserialize(self.jobs[(namespace, name)], "V1Job")

    def list_namespaced_job(self, namespace: str, label_selector: str | None = None) -> Any:
        self.cluster.sync_all()
        items = [_deserialize(job, "V1Job") for (ns, _), job in sorted(self.jobs.items())
                 if ns == namespace and _matches(job["metadata"].get("labels") or {}, label_selector)]
        return SimpleNamespace(items=items)

    def delete_namespaced_job(self, name: str, namespace: str, propagation_policy: str | None = None,
                              body: Any = None) -> Any:
        self.calls.append(f"delete_job {namespace}/{name} {propagation_policy}")
        job = self.jobs.pop((namespace, name), None)
        if job is None:
            raise api_exception(404, "NotFound", f'jobs.batch "{name}" not found')
        if propagation_policy in ("Background", "Foreground"):  # the garbage collector removes dependents
            uid = job["metadata"]["uid"]
            for entry in list(self.core.job_pods.values()):
                if any(o["uid"] == uid for o in entry["pod"]["metadata"]["ownerReferences"]):
                    self.cluster.remove_pod(entry)
            for key, cm in list(self.core.config_maps.items()):
                if any(o["uid"] == uid for o in cm["metadata"].get("ownerReferences") or []):
                    del self.core.config_maps[key]
        return SimpleNamespace(status="Success")

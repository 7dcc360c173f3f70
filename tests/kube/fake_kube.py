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

    def add_pod(self, namespace: str, name: str, labels: dict[str, str], ready: bool) -> None:
        condition = V1PodCondition(type="Ready", status="True" if ready else "False")
        self.pods.setdefault(namespace, []).append(
            V1Pod(metadata=V1ObjectMeta(name=name, namespace=namespace, labels=labels),
                  status=V1PodStatus(conditions=[condition], phase="Running"))
        )

    def list_namespaced_pod(self, namespace: str, label_selector: str | None = None) -> Any:
        pods = [p for p in self.pods.get(namespace, []) if _matches(p.metadata.labels or {}, label_selector)]
        return SimpleNamespace(items=pods)


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
        self.calls: list[str] = []

    def _key(self, group: str, version: str, namespace: str, plural: str, name: str) -> tuple[str, ...]:
        return (group, version, plural, namespace, name)

    def create_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                        body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self.calls.append(f"create {plural} {namespace}/{name}")
        assert body.get("apiVersion") == f"{group}/{version}", "apiVersion must match the URL"
        key = self._key(group, version, namespace, plural, name)
        if key in self.objects:
            raise api_exception(409, "AlreadyExists", f'{plural}.{group} "{name}" already exists')
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

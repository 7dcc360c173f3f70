"""The Kubernetes API boundary: every call chiml makes to the API server goes through here.

Built on the official ``kubernetes`` client. The API objects (CoreV1Api, CustomObjectsApi, ...)
are injected so tests can hand in fakes that behave like the real ones (``ApiException`` with
status 404/409, base64-encoded Secret data); nothing above this module knows about HTTP.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chiml.cluster import NodeInfo, is_gpu_node
from chiml.errors import ChimlError, InvalidInputError, UnreachableError

# KServe's InferenceService API
ISVC_GROUP = "serving.kserve.io"
ISVC_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"


def default_kubeconfig() -> str:
    """$KUBECONFIG's first entry, else ~/.kube/config."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return env.split(os.pathsep)[0]
    return str(Path.home() / ".kube" / "config")


def api_error_message(err: Exception) -> str:
    """The API server's own message from an ApiException body, else the exception text."""
    import json

    body = getattr(err, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return str(body)
    reason = getattr(err, "reason", None)
    return str(reason or err)


@dataclass
class KubeApi:
    """Thin, typed wrapper over the kubernetes client's API objects."""

    core: Any
    custom: Any
    networking: Any = None
    storage: Any = None
    version: Any = None
    host: str = ""
    kubeconfig: str = ""
    _namespaces_seen: set[str] = field(default_factory=set)

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeApi:
        """Connect with a kubeconfig file (the real boundary; not used by unit tests)."""
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        path = kubeconfig or default_kubeconfig()
        if not Path(path).expanduser().is_file():
            raise InvalidInputError(f"kubeconfig not found: {path}", hint="set kubernetes.kubeconfig or $KUBECONFIG")
        try:
            api_client = config.new_client_from_config(config_file=str(Path(path).expanduser()), context=context)
        except ConfigException as err:
            raise InvalidInputError(f"cannot use kubeconfig {path}: {err}") from None
        return cls(
            core=client.CoreV1Api(api_client),
            custom=client.CustomObjectsApi(api_client),
            networking=client.NetworkingV1Api(api_client),
            storage=client.StorageV1Api(api_client),
            version=client.VersionApi(api_client),
            host=api_client.configuration.host,
            kubeconfig=str(Path(path).expanduser()),
        )

    # ----------------------------------------------------------------- errors
    @staticmethod
    def _status(err: Exception) -> int | None:
        return getattr(err, "status", None)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the API; connection failures and unexpected statuses become one-line ChimlErrors."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException:
            raise
        except (HTTPError, OSError) as err:
            where = self.host or "the cluster"
            raise UnreachableError(f"{what}: cannot reach the Kubernetes API at {where}: {err}") from None

    # ----------------------------------------------------------------- cluster facts
    def server_version(self) -> str:
        info = self._call("version", self.version.get_code)
        return str(info.git_version)

    def nodes(self) -> list[NodeInfo]:
        result = []
        for node in self._call("list nodes", self.core.list_node).items:
            labels = dict(node.metadata.labels or {})
            allocatable = dict((node.status.allocatable or {}) if node.status else {})
            result.append(NodeInfo(name=node.metadata.name, labels=labels, gpu=is_gpu_node(labels, allocatable)))
        return result

    def default_storage_class(self) -> str | None:
        if self.storage is None:
            return None
        for sc in self._call("list storage classes", self.storage.list_storage_class).items:
            annotations = sc.metadata.annotations or {}
            if annotations.get("storageclass.kubernetes.io/is-default-class") == "true":
                return str(sc.metadata.name)
        return None

    # ----------------------------------------------------------------- namespaces and secrets
    def ensure_namespace(self, name: str) -> None:
        from kubernetes.client import V1Namespace, V1ObjectMeta
        from kubernetes.client.exceptions import ApiException

        if name in self._namespaces_seen:
            return
        body = V1Namespace(metadata=V1ObjectMeta(name=name, labels={"app.kubernetes.io/part-of": "chiml"}))
        try:
            self._call("create namespace", self.core.create_namespace, body)
        except ApiException as err:
            if self._status(err) != 409:
                raise ChimlError(f"cannot create namespace {name}: {api_error_message(err)}") from None
        self._namespaces_seen.add(name)

    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's decoded data, or None if it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self._call("read secret", self.core.read_namespaced_secret, name, namespace)
        except ApiException as err:
            if self._status(err) == 404:
                return None
            raise ChimlError(f"cannot read secret {namespace}/{name}: {api_error_message(err)}") from None
        return {k: base64.b64decode(v).decode("utf-8") for k, v in (secret.data or {}).items()}

    def create_secret(
        self,
        namespace: str,
        name: str,
        string_data: dict[str, str],
        annotations: dict[str, str] | None = None,
        secret_type: str = "Opaque",
    ) -> bool:
        """Create a Secret; False (and no change) if one of that name already exists."""
        from kubernetes.client import V1ObjectMeta, V1Secret
        from kubernetes.client.exceptions import ApiException

        body = V1Secret(
            metadata=V1ObjectMeta(
                name=name,
                namespace=namespace,
                annotations=annotations or None,
                labels={"app.kubernetes.io/part-of": "chiml", "app.kubernetes.io/managed-by": "chiml"},
            ),
            type=secret_type,
            string_data=string_data,
        )
        try:
            self._call("create secret", self.core.create_namespaced_secret, namespace, body)
        except ApiException as err:
            if self._status(err) == 409:
                return False
            raise ChimlError(f"cannot create secret {namespace}/{name}: {api_error_message(err)}") from None
        return True

    def delete_secret(self, namespace: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._call("delete secret", self.core.delete_namespaced_secret, name, namespace)
        except ApiException as err:
            if self._status(err) != 404:
                raise ChimlError(f"cannot delete secret {namespace}/{name}: {api_error_message(err)}") from None

    # ----------------------------------------------------------------- diagnostics
    def warning_events(self, namespace: str, since: datetime | None = None, limit: int = 10) -> list[str]:
        """Recent Warning events in a namespace, newest last, as 'Kind/name: reason: message' lines."""
        from kubernetes.client.exceptions import ApiException

        since = since or datetime.now(UTC) - timedelta(minutes=30)
        try:
            events = self._call(
                "list events", self.core.list_namespaced_event, namespace, field_selector="type=Warning"
            ).items
        except ApiException as err:
            return [f"(events unavailable: {api_error_message(err)})"]

        def when(event: Any) -> datetime:
            stamp = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
            return stamp if stamp is not None else datetime.min.replace(tzinfo=UTC)

        recent = sorted((e for e in events if when(e) >= since), key=when)[-limit:]
        return [
            f"{e.involved_object.kind}/{e.involved_object.name}: {e.reason}: {(e.message or '').strip()}"
            for e in recent
        ]

    def events_about(self, namespace: str, kind: str, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """Events (any type) about one object, oldest first: time, reason, message."""
        from kubernetes.client.exceptions import ApiException

        try:
            events = self._call("list events", self.core.list_namespaced_event, namespace).items
        except ApiException:
            return []
        mine = [e for e in events if e.involved_object.kind == kind and e.involved_object.name == name]
        stamped = [(e.last_timestamp or e.event_time or e.metadata.creation_timestamp, e) for e in mine]
        stamped.sort(key=lambda pair: pair[0] or datetime.min.replace(tzinfo=UTC))
        return [{"time": str(when or ""), "reason": e.reason or "", "message": (e.message or "").strip()}
                for when, e in stamped[-limit:]]

    def pods_ready(self, namespace: str, selector: str) -> tuple[int, int]:
        """(ready pods, pods) matching a label selector."""
        pods = self._call("list pods", self.core.list_namespaced_pod, namespace, label_selector=selector).items
        ready = 0
        for pod in pods:
            conditions = (pod.status.conditions or []) if pod.status else []
            if any(c.type == "Ready" and c.status == "True" for c in conditions):
                ready += 1
        return ready, len(pods)

    # ----------------------------------------------------------------- InferenceServices
    def create_isvc(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            "create InferenceService",
            self.custom.create_namespaced_custom_object,
            ISVC_GROUP,
            ISVC_VERSION,
            namespace,
            ISVC_PLURAL,
            body,
        )

    def get_isvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._call(
                "get InferenceService",
                self.custom.get_namespaced_custom_object,
                ISVC_GROUP,
                ISVC_VERSION,
                namespace,
                ISVC_PLURAL,
                name,
            )
        except ApiException as err:
            if self._status(err) == 404:
                return None
            raise ChimlError(f"cannot read InferenceService {name}: {api_error_message(err)}") from None

    def list_isvc(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        result = self._call(
            "list InferenceServices",
            self.custom.list_namespaced_custom_object,
            ISVC_GROUP,
            ISVC_VERSION,
            namespace,
            ISVC_PLURAL,
            label_selector=selector,
        )
        return list(result.get("items", []))

    def patch_isvc(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            "patch InferenceService",
            self.custom.patch_namespaced_custom_object,
            ISVC_GROUP,
            ISVC_VERSION,
            namespace,
            ISVC_PLURAL,
            name,
            patch,
        )

    def delete_isvc(self, namespace: str, name: str) -> bool:
        """Delete; False if it did not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._call(
                "delete InferenceService",
                self.custom.delete_namespaced_custom_object,
                ISVC_GROUP,
                ISVC_VERSION,
                namespace,
                ISVC_PLURAL,
                name,
            )
        except ApiException as err:
            if self._status(err) == 404:
                return False
            raise ChimlError(f"cannot delete InferenceService {name}: {api_error_message(err)}") from None
        return True

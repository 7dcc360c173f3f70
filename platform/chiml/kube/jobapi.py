"""Jobs, their pods, their logs and ConfigMaps through the kubernetes client (BatchV1Api, CoreV1Api).

The same boundary style as :mod:`chiml.kube.kubeapi`: API objects are injected (tests hand in
fakes that behave like the API server), 404 on delete is success, other API errors become one
ChimlError line with the API server's own message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from chiml.errors import ChimlError
from chiml.kube.kubeapi import KubeApi, api_error_message


@dataclass
class JobApi:
    """The calls a training run makes."""

    core: Any
    batch: Any
    host: str = ""

    @classmethod
    def from_kube(cls, kube: KubeApi) -> JobApi:
        """Share the connection of a KubeApi (its CoreV1Api's ApiClient)."""
        from kubernetes import client

        return cls(core=kube.core, batch=client.BatchV1Api(kube.core.api_client), host=kube.host)

    def _call(self, what: str, fn: Any, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as err:
            if missing_ok and err.status == 404:
                return None
            raise ChimlError(f"{what}: {api_error_message(err)}") from None
        except (HTTPError, OSError) as err:
            where = self.host or "the cluster"
            raise ChimlError(f"{what}: cannot reach the Kubernetes API at {where}: {err}") from None

    # ----------------------------------------------------------------- Jobs
    def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create; returns the stored object as a dict (with its uid)."""
        name = body["metadata"]["name"]
        created = self._call(f"create Job {name}", self.batch.create_namespaced_job, namespace, body)
        return _as_dict(created)

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        job = self._call(f"read Job {name}", self.batch.read_namespaced_job, name, namespace, missing_ok=True)
        return None if job is None else _as_dict(job)

    def delete_job(self, namespace: str, name: str) -> None:
        # Background: the Job goes now and the garbage collector removes its pods (and the
        # ConfigMap it owns). The API's default for Jobs is to orphan the pods.
        self._call(
            f"delete Job {name}",
            self.batch.delete_namespaced_job,
            name,
            namespace,
            propagation_policy="Background",
            missing_ok=True,
        )

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        jobs = self._call("list Jobs", self.batch.list_namespaced_job, namespace, label_selector=label_selector)
        return [_as_dict(job) for job in jobs.items]

    def job_pods(self, namespace: str, job_name: str) -> list[Any]:
        """The Job's pods, oldest first (a replaced pod stays listed until the Job goes)."""
        pods = self._call(
            f"list pods of Job {job_name}",
            self.core.list_namespaced_pod,
            namespace,
            label_selector=f"batch.kubernetes.io/job-name={job_name}",
        ).items
        return sorted(pods, key=lambda p: (str(p.metadata.creation_timestamp or ""), p.metadata.name))

    def job_pod(self, namespace: str, job_name: str) -> Any:
        """The Job's newest pod, or None before the controller made one."""
        pods = self.job_pods(namespace, job_name)
        return pods[-1] if pods else None

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        """What the container has logged so far ("" when it never started)."""
        from kubernetes.client.exceptions import ApiException

        try:
            return str(self.core.read_namespaced_pod_log(pod, namespace, container=container))
        except ApiException as err:
            if err.status in (400, 404):  # not started yet, or gone
                return ""
            raise ChimlError(f"read log of pod {pod}: {api_error_message(err)}") from None

    def stream_pod_log(self, namespace: str, pod: str, container: str, follow: bool = True) -> Iterator[str]:
        """The container's log, line by line, until the container exits (``follow``) or up to now."""
        response = self._call(
            f"read log of pod {pod}",
            self.core.read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            follow=follow,
            _preload_content=False,
        )
        try:
            pending = b""
            # read1: whatever has arrived, at once; read()/stream() would wait for a full buffer on a
            # response that is not chunked, holding back the lines of a quiet run
            while chunk := response.read1(4096):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace") + "\n"
            if pending:
                yield pending.decode("utf-8", errors="replace")
        finally:
            response.release_conn()

    # ----------------------------------------------------------------- ConfigMaps
    def create_config_map(self, namespace: str, body: dict[str, Any]) -> None:
        self._call(
            f"create ConfigMap {body['metadata']['name']}", self.core.create_namespaced_config_map, namespace, body
        )

    def delete_config_map(self, namespace: str, name: str) -> None:
        self._call(
            f"delete ConfigMap {name}", self.core.delete_namespaced_config_map, name, namespace, missing_ok=True
        )


def _as_dict(obj: Any) -> dict[str, Any]:
    """A client model (V1Job) or dict as the API's JSON shape."""
    if isinstance(obj, dict):
        return obj
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)

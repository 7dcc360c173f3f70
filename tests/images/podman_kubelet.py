"""Run rendered Kubernetes container specs under podman the way a kubelet would.

What is honoured, as the kubelet does it: ``command`` replaces the image's ENTRYPOINT and
``args`` its CMD; ``$(VAR)`` in them expands from the container's env; ``env`` values,
``secretKeyRef``/``configMapKeyRef`` and ``envFrom`` (a missing Secret or key fails like
CreateContainerConfigError); ``securityContext`` runAsUser/runAsGroup (container over pod),
runAsNonRoot (refused when the effective user is 0), readOnlyRootFilesystem (no tmpfs added:
only the pod's volumes are writable), capabilities drop ALL, allowPrivilegeEscalation false;
``volumeMounts`` of emptyDir (a 0777 temp folder), configMap (the rendered ConfigMap's keys as
files) and any volume the test provides (e.g. KServe's /mnt/models), with subPath and readOnly;
init containers run to completion in order; ``containerPort``s are published on 127.0.0.1; the
readinessProbe (httpGet by port number or name, or exec) must pass before the timeout.

Network: slirp4netns with the host's loopback reachable as 10.0.2.2, so a service the test runs
on the host (PostgreSQL) is reachable under the in-cluster name the chart uses (``--add-host``).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST_LOOPBACK = "10.0.2.2"  # slirp4netns allow_host_loopback
NETWORK = "slirp4netns:allow_host_loopback=true"
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class PodFailed(AssertionError):
    """A pod that would not become ready on a cluster (the reason is the message)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Podman:
    """Thin podman wrapper that removes every container it started."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.tmpdirs: list[Path] = []

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["podman", *args], capture_output=True, text=True, check=False, timeout=timeout)
        if check and result.returncode != 0:
            raise PodFailed(f"podman {' '.join(args[:2])} failed: {result.stderr.strip()[-800:]}")
        return result

    def image_exists(self, ref: str) -> bool:
        return self("image", "exists", ref, check=False).returncode == 0

    def image_config(self, ref: str) -> dict[str, Any]:
        return json.loads(self("image", "inspect", ref).stdout)[0]["Config"]

    def run(self, ref: str, *, name: str | None = None, args: list[str] | None = None,
            entrypoint: list[str] | None = None, env: dict[str, str] | None = None,
            mounts: list[str] | None = None, ports: list[int] | None = None, user: str | None = None,
            read_only: bool = False, hardening: bool = True, hosts: dict[str, str] | None = None,
            detach: bool = True, network: str = NETWORK, timeout: float = 600) -> tuple[str, dict[int, int]]:
        """Start a container; returns its name and {container port: host port on 127.0.0.1}."""
        name = name or f"chiml-test-{uuid.uuid4().hex[:10]}"
        command = ["run", "--name", name, f"--network={network}", "--pull=never"]
        command.append("-d" if detach else "--rm=false")
        if user is not None:
            command += ["--user", user]
        if read_only:
            command += ["--read-only", "--read-only-tmpfs=false"]
        if hardening:
            command += ["--cap-drop=all", "--security-opt=no-new-privileges"]
        for key, value in (env or {}).items():
            command += ["-e", f"{key}={value}"]
        for mount in mounts or []:
            command += ["-v", mount]
        published: dict[int, int] = {}
        for port in ports or []:
            published[port] = free_port()
            command += ["-p", f"127.0.0.1:{published[port]}:{port}"]
        for host, address in (hosts or {}).items():
            command += ["--add-host", f"{host}:{address}"]
        if entrypoint is not None:
            command += ["--entrypoint", json.dumps(entrypoint)]
        command += [ref, *(args or [])]
        self.started.append(name)
        result = self(*command, check=False, timeout=timeout)
        if result.returncode != 0 and detach:
            raise PodFailed(f"container of {ref} did not start: {result.stderr.strip()[-800:]}")
        return name, published

    def logs(self, name: str) -> str:
        result = self("logs", name, check=False)
        return (result.stdout + result.stderr)[-3000:]

    def state(self, name: str) -> dict[str, Any]:
        result = self("inspect", "--format", "{{json .State}}", name, check=False)
        return json.loads(result.stdout) if result.returncode == 0 else {}

    def wait_exit(self, name: str, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state(name)
            if state and not state.get("Running", False) and state.get("Status") in {"exited", "stopped"}:
                return int(state.get("ExitCode", -1))
            time.sleep(1)
        raise PodFailed(f"{name} still running after {timeout:.0f}s:\n{self.logs(name)}")

    def remove(self, name: str) -> None:
        self("rm", "-f", "-t", "2", name, check=False)
        if name in self.started:
            self.started.remove(name)

    def tmpdir(self, prefix: str = "chiml-vol-") -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
        path.chmod(0o777)
        self.tmpdirs.append(path)
        return path

    def cleanup(self) -> None:
        for name in list(self.started):
            self.remove(name)
        for path in self.tmpdirs:
            shutil.rmtree(path, ignore_errors=True)
        self.tmpdirs.clear()


def wait_http(url: str, timeout: float, *, alive: callable | None = None) -> int:  # type: ignore[valid-type]
    """Poll ``url`` until it answers 200-399 (a kubelet httpGet probe's success); returns the status."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise PodFailed(f"container exited before {url} answered ({last})")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if 200 <= response.status < 400:
                    return response.status
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError) as err:
            last = str(err)
        time.sleep(1)
    raise PodFailed(f"{url} not ready after {timeout:.0f}s ({last})")


# ----------------------------------------------------------------------------------- pod specs


@dataclass
class Manifests:
    """The documents `helm template` rendered, by kind and name."""

    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d and d.get("kind") == kind]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((d for d in self.of_kind(kind) if d["metadata"]["name"] == name), None)


def helm_template(helm: Path, chart: Path, values: list[Path], sets: dict[str, str] | None = None,
                  release: str = "chiml", namespace: str = "chiml") -> Manifests:
    import yaml

    command = [str(helm), "template", release, str(chart), "--namespace", namespace]
    for path in values:
        command += ["-f", str(path)]
    for key, value in (sets or {}).items():
        command += ["--set-string", f"{key}={value}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PodFailed(f"helm template {chart.name} failed: {result.stderr.strip()}")
    return Manifests([d for d in yaml.safe_load_all(result.stdout) if d])


@dataclass
class PodSpec:
    """What a kubelet gets: the pod spec, where it came from, and the objects it refers to."""

    name: str
    spec: dict[str, Any]
    manifests: Manifests
    extra_volumes: dict[str, tuple[Path, bool]] = field(default_factory=dict)  # name -> (host dir, read-only)


def pods_of(manifests: Manifests) -> list[PodSpec]:
    """Every Deployment's pod template."""
    deployments = manifests.of_kind("Deployment")
    return [PodSpec(d["metadata"]["name"], d["spec"]["template"]["spec"], manifests) for d in deployments]


def inference_service_pod(runtime: dict[str, Any], manifests: Manifests, isvc_name: str, model_dir: Path) -> PodSpec:
    """The pod KServe makes for an InferenceService served by this (Cluster)ServingRuntime: the
    runtime's containers with ``{{.Name}}`` set to the InferenceService's name, and the model the
    storage initializer downloaded mounted read-only at /mnt/models (KServe's
    ``kserve-provision-location`` volume)."""
    spec = json.loads(json.dumps(runtime["spec"]).replace("{{.Name}}", isvc_name))
    for container in spec["containers"]:
        container.setdefault("volumeMounts", []).append(
            {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True}
        )
    pod = {"containers": spec["containers"], "volumes": spec.get("volumes", [])}
    return PodSpec(isvc_name, pod, manifests, {"kserve-provision-location": (model_dir, True)})


@dataclass
class RunningPod:
    containers: list[str]
    ports: dict[str, dict[int, int]]  # container name -> {containerPort: host port}


class Kubelet:
    """Runs :class:`PodSpec`s under podman."""

    def __init__(self, podman: Podman, secrets: dict[str, dict[str, str]], hosts: dict[str, str] | None = None,
                 ready_timeout: float = 240) -> None:
        self.podman = podman
        self.secrets = secrets
        self.hosts = hosts or {}
        self.ready_timeout = ready_timeout

    # env --------------------------------------------------------------------------------------
    def _lookup(self, pod: PodSpec, ref: dict[str, Any], kind: str) -> str | None:
        name, key = ref["name"], ref["key"]
        if kind == "Secret":
            source = self.secrets.get(name)
        else:
            cm = pod.manifests.find("ConfigMap", name)
            source = (cm or {}).get("data")
        if source is None or key not in source:
            if ref.get("optional"):
                return None
            raise PodFailed(f"{pod.name}: CreateContainerConfigError: {kind} {name!r} has no key {key!r}")
        return str(source[key])

    def env_of(self, pod: PodSpec, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                cm = pod.manifests.find("ConfigMap", source["configMapRef"]["name"])
                if cm is None and not source["configMapRef"].get("optional"):
                    raise PodFailed(f"{pod.name}: ConfigMap {source['configMapRef']['name']} not rendered")
                env.update({k: str(v) for k, v in ((cm or {}).get("data") or {}).items()})
            elif "secretRef" in source:
                name = source["secretRef"]["name"]
                if name not in self.secrets:
                    rendered = pod.manifests.find("Secret", name)
                    if rendered is None:
                        if source["secretRef"].get("optional"):
                            continue
                        raise PodFailed(f"{pod.name}: CreateContainerConfigError: Secret {name!r} not found")
                    import base64

                    env.update({k: base64.b64decode(v).decode() for k, v in (rendered.get("data") or {}).items()})
                    env.update({k: str(v) for k, v in (rendered.get("stringData") or {}).items()})
                else:
                    env.update(self.secrets[name])
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), str(item["value"]))
            elif "valueFrom" in item:
                ref = item["valueFrom"]
                if "secretKeyRef" in ref:
                    value = self._lookup(pod, ref["secretKeyRef"], "Secret")
                elif "configMapKeyRef" in ref:
                    value = self._lookup(pod, ref["configMapKeyRef"], "ConfigMap")
                else:
                    continue  # fieldRef/resourceFieldRef: nothing our images read
                if value is not None:
                    env[item["name"]] = value
            else:
                env[item["name"]] = ""
        return env

    # volumes ----------------------------------------------------------------------------------
    def _volume_dirs(self, pod: PodSpec) -> dict[str, tuple[Path, bool]]:
        dirs: dict[str, tuple[Path, bool]] = dict(pod.extra_volumes)
        for volume in pod.spec.get("volumes", []):
            name = volume["name"]
            if name in dirs:
                continue
            if "emptyDir" in volume:
                dirs[name] = (self.podman.tmpdir(), False)
            elif "configMap" in volume:
                cm = pod.manifests.find("ConfigMap", volume["configMap"]["name"])
                if cm is None:
                    raise PodFailed(f"{pod.name}: volume {name}: ConfigMap {volume['configMap']['name']} not rendered")
                path = self.podman.tmpdir()
                for key, text in (cm.get("data") or {}).items():
                    (path / key).write_text(text)
                    (path / key).chmod(0o644)
                dirs[name] = (path, True)
            elif "secret" in volume:
                path = self.podman.tmpdir()
                for key, text in self.secrets.get(volume["secret"]["secretName"], {}).items():
                    (path / key).write_text(text)
                dirs[name] = (path, True)
            else:
                raise PodFailed(f"{pod.name}: volume {name}: kind {sorted(volume)} not supported here")
        return dirs

    def _mounts(self, pod: PodSpec, container: dict[str, Any], dirs: dict[str, tuple[Path, bool]]) -> list[str]:
        mounts = []
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in dirs:
                raise PodFailed(f"{pod.name}/{container['name']}: volumeMount {mount['name']!r} has no volume")
            host, read_only = dirs[mount["name"]]
            if mount.get("subPath"):
                host = host / mount["subPath"]
            mode = "ro" if read_only or mount.get("readOnly") else "rw"
            mounts.append(f"{host}:{mount['mountPath']}:{mode}")
        return mounts

    # containers -------------------------------------------------------------------------------
    def _user(self, pod: PodSpec, container: dict[str, Any], image: str) -> tuple[str | None, dict[str, Any]]:
        security = {**(pod.spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
        uid, gid = security.get("runAsUser"), security.get("runAsGroup")
        if uid is None:
            image_user = self.podman.image_config(image).get("User") or "0"
            uid = image_user.split(":")[0]
        if security.get("runAsNonRoot") and str(uid) in {"0", "root"}:
            raise PodFailed(f"{pod.name}/{container['name']}: CreateContainerConfigError: runAsNonRoot and image "
                            f"{image} runs as root")
        if security.get("runAsUser") is None:
            return None, security
        return f"{uid}:{gid}" if gid is not None else str(uid), security

    def _start(self, pod: PodSpec, container: dict[str, Any], dirs: dict[str, tuple[Path, bool]],
               detach: bool) -> tuple[str, dict[int, int]]:
        image = container["image"]
        if not self.podman.image_exists(image):
            raise PodFailed(f"{pod.name}/{container['name']}: ErrImagePull: {image} is not what `make images` built")
        env = self.env_of(pod, container)
        expand = lambda text: VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), str(text))  # noqa: E731
        command = [expand(x) for x in container.get("command", [])] or None
        args = [expand(x) for x in container.get("args", [])]
        if command is None and not args:
            args = []  # the image's own CMD
        user, security = self._user(pod, container, image)
        caps = (security.get("capabilities") or {}).get("drop", [])
        ports = [p["containerPort"] for p in container.get("ports", [])]
        return self.podman.run(
            image, entrypoint=command, args=args, env=env, mounts=self._mounts(pod, container, dirs), ports=ports,
            user=user, read_only=bool(security.get("readOnlyRootFilesystem")),
            hardening="ALL" in caps or security.get("allowPrivilegeEscalation") is False,
            hosts=self.hosts, detach=True,
        )

    def _probe(self, pod: PodSpec, container: dict[str, Any], name: str, ports: dict[int, int]) -> None:
        probe = container.get("readinessProbe")
        if probe is None:
            raise PodFailed(f"{pod.name}/{container['name']}: no readinessProbe: nothing tells a cluster it is ready")
        alive = lambda: self.podman.state(name).get("Running", False)  # noqa: E731
        try:
            if "httpGet" in probe:
                port = probe["httpGet"]["port"]
                if isinstance(port, str) and not port.isdigit():
                    named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
                    if port not in named:
                        raise PodFailed(f"{pod.name}/{container['name']}: probe port {port!r} is not a named port")
                    port = named[port]
                port = int(port)
                if port not in ports:
                    raise PodFailed(f"{pod.name}/{container['name']}: probe port {port} is not a containerPort")
                path = probe["httpGet"].get("path", "/")
                wait_http(f"http://127.0.0.1:{ports[port]}{path}", self.ready_timeout, alive=alive)
            elif "exec" in probe:
                deadline = time.monotonic() + self.ready_timeout
                while self.podman("exec", name, *probe["exec"]["command"], check=False).returncode != 0:
                    if not alive() or time.monotonic() > deadline:
                        raise PodFailed(f"{pod.name}/{container['name']}: exec probe never passed")
                    time.sleep(2)
            else:
                raise PodFailed(f"{pod.name}/{container['name']}: probe kind {sorted(probe)} not supported here")
        except PodFailed as err:
            raise PodFailed(f"{pod.name}/{container['name']} ({container['image']}): {err}\n"
                            f"--- container log ---\n{self.podman.logs(name)}") from None

    def run(self, pod: PodSpec, *, skip_init: set[str] | None = None) -> RunningPod:
        """Init containers to completion, then every container until its readinessProbe passes."""
        dirs = self._volume_dirs(pod)
        for init in pod.spec.get("initContainers", []):
            if init["name"] in (skip_init or set()):
                continue
            name, _ = self._start(pod, init, dirs, detach=True)
            code = self.podman.wait_exit(name, self.ready_timeout)
            if code != 0:
                raise PodFailed(f"{pod.name}: init container {init['name']} exited {code}:\n{self.podman.logs(name)}")
        running = RunningPod([], {})
        for container in pod.spec["containers"]:
            name, ports = self._start(pod, container, dirs, detach=True)
            running.containers.append(name)
            running.ports[container["name"]] = ports
            self._probe(pod, container, name, ports)
        return running

    def stop(self, running: RunningPod) -> None:
        for name in running.containers:
            self.podman.remove(name)

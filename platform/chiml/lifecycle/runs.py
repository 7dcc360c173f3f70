"""`chiml runs`: the training runs and tuning studies chiml started, wherever they run.

MLflow is the register: every run chiml starts carries where it runs (``chiml.where``) and what
runs it, a process on one machine (``chiml.host``, ``chiml.pid``) or a Kubernetes Job
(``chiml.job`` = namespace/name). So `runs list`, `runs logs` and `runs cancel` work for runs
started from another terminal, a notebook, or with ``--detach``, on every profile:

- local: a run is a process. ``--detach`` starts :mod:`chiml.lifecycle.supervise` on its own,
  its output in ``CHIML_HOME/runs/<run id>.log``; cancel sends it SIGINT (Ctrl-C: it stops the
  script and closes the run KILLED), SIGKILL after a grace period.
- kubernetes, chameleon: a run is a Job. Logs come from its pods while they exist (then from
  the output stored with the run); cancel deletes the Job, whose pod closes the run KILLED.

A run whose process or pod vanished without closing it (kill -9, OOM of the whole container,
a deleted node) would stay RUNNING forever: listing a run reconciles it with what is really
there and closes it with the reason.
"""

from __future__ import annotations

import builtins
import contextlib
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from chiml.errors import InvalidInputError, NotFoundError, NotSupportedError
from chiml.kube import jobs
from chiml.lifecycle import mlflow_client
from chiml.lifecycle.study import this_host
from chiml.lifecycle.supervise import close_run
from chiml.sites import TrainingSite

if TYPE_CHECKING:
    from chiml.lifecycle.cluster import ClusterSite

KINDS = ("train", "study")
# a RUNNING run younger than this is left alone: its Job or process may be starting right now
SETTLE_S = 60.0
Echo = Callable[[str], None]


@dataclass
class RunInfo:
    """One row of `chiml runs list`."""

    run_id: str
    kind: str
    name: str
    status: str
    where: str
    experiment_id: str
    started: str
    ended: str | None
    url: str
    job: str | None = None
    pid: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def process_tags(pid: int, log: Path | None = None) -> dict[str, str]:
    """What finds a local run's process again (and tells it from a later process with the same id)."""
    tags = {"chiml.where": f"local:{this_host()}", "chiml.host": this_host(), "chiml.pid": str(pid),
            "chiml.pid_started": repr(psutil.Process(pid).create_time())}
    if log is not None:
        tags["chiml.log"] = str(log)
    return tags


def start_detached(platform: Any, client: Any, run_id: str, target: str, args: list[str], env: dict[str, str],
                   cwd: Path, timeout: float | None) -> int:
    """Start the run's supervisor on its own (new session, output to a log file); returns its pid."""
    log = Path(platform.home) / "runs" / f"{run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "chiml.lifecycle.supervise", *(["--timeout", str(timeout)] if timeout else []),
               target, *args]
    try:
        with log.open("ab") as sink:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as err:
        close_run(client, run_id, "FAILED", -1, [], error=f"could not start the run's process: {err}")
        raise NotSupportedError(f"could not start the training process: {err}") from None
    for key, value in process_tags(process.pid, log).items():
        client.set_tag(run_id, key, value)
    return process.pid


class Runs:
    """List, follow and cancel the platform's runs (``Platform.runs``)."""

    def __init__(self, platform: TrainingSite, site: ClusterSite | None = None) -> None:
        self.platform = platform
        self._site = site
        mlflow_client.configure_client_env()
        self.client = mlflow_client.connect(platform)

    # ----------------------------------------------------------------- where runs are
    @property
    def on_cluster(self) -> bool:
        from chiml.lifecycle.train import CLUSTER_PROFILES

        return self._site is not None or self.platform.profile.name in CLUSTER_PROFILES

    def site(self) -> Any:
        if self._site is None:
            from chiml.lifecycle.cluster import cluster_site

            self._site = cluster_site(self.platform)
        return self._site

    # ----------------------------------------------------------------- reading
    def list(self, limit: int = 20, status: str | None = None, kind: str | None = None) -> builtins.list[RunInfo]:
        """The newest runs first (reconciled with what really runs)."""
        if kind is not None and kind not in KINDS:
            raise InvalidInputError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        kinds = [kind] if kind else list(KINDS)
        runs: builtins.list[Any] = []
        for wanted in kinds:
            query = f"tags.`chiml.kind` = '{wanted}'"
            if status:
                query += f" and attributes.status = '{status.upper()}'"
            runs += self.client.search_runs(experiments, filter_string=query, max_results=limit,
                                            order_by=["attributes.start_time DESC"])
        runs.sort(key=lambda r: r.info.start_time or 0, reverse=True)
        return [self._info(self._reconcile(run)) for run in runs[:limit]]

    def get(self, run_id: str) -> RunInfo:
        return self._info(self._reconcile(self._run(run_id)))

    def _run(self, run_id: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            raise NotFoundError(f"no run {run_id} in MLflow at {self.platform.tracking_uri}") from None
        if run.data.tags.get("chiml.kind") not in KINDS:
            raise InvalidInputError(f"run {run_id} is not a training run or a study chiml started")
        return run

    def _info(self, run: Any) -> RunInfo:
        tags = run.data.tags
        return RunInfo(
            run_id=run.info.run_id,
            kind=tags.get("chiml.kind", "?"),
            name=run.info.run_name or "",
            status=run.info.status,
            where=tags.get("chiml.where", "local"),
            experiment_id=run.info.experiment_id,
            started=_iso(run.info.start_time),
            ended=_iso(run.info.end_time) if run.info.end_time else None,
            url=mlflow_client.run_url(self.platform.tracking_uri, run.info.experiment_id, run.info.run_id),
            job=tags.get("chiml.job"),
            pid=int(tags["chiml.pid"]) if tags.get("chiml.pid", "").isdigit() else None,
            error=tags.get("chiml.error"),
        )

    # ----------------------------------------------------------------- reconciling
    def _reconcile(self, run: Any) -> Any:
        if run.info.status != "RUNNING" or time.time() - (run.info.start_time or 0) / 1000 < SETTLE_S:
            return run
        tags = run.data.tags
        reason = None
        if tags.get("chiml.job") and self.on_cluster:
            reason = self._job_gone(tags["chiml.job"])
        elif tags.get("chiml.host") == this_host() and _process(tags) is None:
            reason = "its process ended without closing the run (killed, or the machine restarted)"
        if reason is None:
            return run
        self._close(run, "FAILED", reason)
        return self.client.get_run(run.info.run_id)

    def _job_gone(self, job: str) -> str | None:
        """Why a RUNNING run's Job cannot close it any more, or None while it may."""
        from chiml.lifecycle import cluster

        namespace, name = job.split("/", 1)
        api = self.site().api
        found = api.read_job(namespace, name)
        if found is None:
            return "its Job is gone from the cluster without closing the run"
        if not cluster.job_finished(found):
            return None
        pod = api.job_pod(namespace, name)
        if pod is not None and pod.status is not None and pod.status.phase in ("Succeeded", "Failed"):
            container = (pod.spec.containers or [None])[0]
            outcome = cluster.terminal_outcome(pod, found, container.name if container else "train")
            return outcome.error or f"its pod ended ({pod.status.phase}) without closing the run"
        return cluster.job_failure(found) or "its Job finished without closing the run"

    def _close(self, run: Any, status: str, reason: str) -> None:
        run_id = run.info.run_id
        if run.data.tags.get("chiml.kind") == "study":
            for child in self._children(run):
                if child.info.status == "RUNNING":
                    self.client.set_tag(child.info.run_id, "chiml.trial_state", "FAIL (stopped)")
                    self.client.set_terminated(child.info.run_id, status="KILLED")
        close_run(self.client, run_id, status, -1, [], error=reason)

    def _children(self, run: Any) -> builtins.list[Any]:
        return list(self.client.search_runs([run.info.experiment_id],
                                            filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
                                            max_results=5000))

    # ----------------------------------------------------------------- logs
    def logs(self, run_id: str, follow: bool = False, echo: Echo | None = None, poll: float = 1.0) -> None:
        """Write the run's output to ``echo`` (default: stdout), following it while it runs with ``follow``."""
        say = echo or _print
        run = self._run(run_id)
        tags = run.data.tags
        if tags.get("chiml.job") and self.on_cluster and self._job_logs(tags["chiml.job"], follow, say, poll):
            return
        if tags.get("chiml.log") and Path(tags["chiml.log"]).is_file() and tags.get("chiml.host") == this_host():
            for line in _tail(Path(tags["chiml.log"]), (lambda: _process(tags) is not None) if follow else None,
                              poll):
                say(line)
            return
        if run.info.status == "RUNNING" and follow:
            raise NotSupportedError(f"run {run_id} runs in process {tags.get('chiml.pid')} on "
                                    f"{tags.get('chiml.host', '?')}, which shows its output itself; it is stored "
                                    "with the run when the run ends")
        self._stored_logs(run, say)

    def _job_logs(self, job: str, follow: bool, say: Echo, poll: float) -> bool:
        """The Job's pod logs (a study's: every worker's, prefixed); False when the Job is gone."""
        from chiml.lifecycle import cluster

        namespace, name = job.split("/", 1)
        api = self.site().api
        if api.read_job(namespace, name) is None:
            return False
        while follow:  # wait for a container to start (or fail to)
            pods = api.job_pods(namespace, name)
            if any(p.status is not None and p.status.phase != "Pending" for p in pods):
                break
            problems = [cluster.pending_failure(p) for p in pods]
            if any(problems):
                say(f"the pod cannot start: {next(p for p in problems if p)}\n")
                return True
            if api.read_job(namespace, name) is None:
                return False
            time.sleep(poll)
        newest: dict[str | None, Any] = {}  # per worker index (a study), or the one pod (a run)
        for pod in api.job_pods(namespace, name):  # oldest first: a replacement pod wins
            if pod.status is not None and pod.status.phase != "Pending":
                newest[(pod.metadata.labels or {}).get(jobs.COMPLETION_INDEX_LABEL)] = pod
        pods = list(newest.values())
        several = len(pods) > 1
        lines: queue.Queue[str | None] = queue.Queue()

        def read(pod: Any) -> None:
            prefix = f"[{pod.metadata.name}] " if several else ""
            try:
                for line in api.stream_pod_log(namespace, pod.metadata.name, container=pod.spec.containers[0].name,
                                               follow=follow):
                    lines.put(prefix + line)
            finally:
                lines.put(None)

        readers = [threading.Thread(target=read, args=(pod,), daemon=True) for pod in pods]
        for reader in readers:
            reader.start()
        open_streams = len(readers)
        while open_streams:
            line = lines.get()
            if line is None:
                open_streams -= 1
            else:
                say(line)
        return True

    def _stored_logs(self, run: Any, say: Echo) -> None:
        import tempfile

        from mlflow.exceptions import MlflowException

        run_id = run.info.run_id
        shown = False
        with tempfile.TemporaryDirectory(prefix="chiml-logs-") as folder:
            for directory in ("logs", "worker-logs"):
                try:
                    listing = self.client.list_artifacts(run_id, directory)
                except MlflowException:
                    continue
                for item in listing:
                    if item.is_dir:
                        continue
                    path = Path(self.client.download_artifacts(run_id, item.path, folder))
                    say(f"==> {item.path} <==\n")
                    say(path.read_text(encoding="utf-8", errors="replace"))
                    shown = True
        if not shown:
            say(f"(no output stored with run {run_id})\n")

    # ----------------------------------------------------------------- cancel
    def cancel(self, run_id: str, grace: float = 15.0) -> RunInfo:
        """Stop a RUNNING run: delete its Job, or stop its process; it ends KILLED."""
        run = self._run(run_id)
        if run.info.status != "RUNNING":
            raise InvalidInputError(f"run {run_id} is {run.info.status}: nothing to cancel")
        tags = run.data.tags
        if tags.get("chiml.job"):
            if not self.on_cluster:
                raise NotSupportedError(f"run {run_id} is a Kubernetes Job ({tags['chiml.job']})",
                                        hint="cancel it with the profile of that cluster (--profile)")
            from chiml.lifecycle import cluster

            namespace, name = tags["chiml.job"].split("/", 1)
            cluster.delete(self.site().api, namespace, name)  # the pod's supervisor closes the run KILLED
        elif tags.get("chiml.host") and tags["chiml.host"] != this_host():
            raise NotSupportedError(f"run {run_id} runs on {tags['chiml.host']}", hint="cancel it there")
        else:
            _stop_process(tags, grace)
        deadline = time.monotonic() + grace
        while self.client.get_run(run_id).info.status == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.5)
        current = self.client.get_run(run_id)
        if current.info.status == "RUNNING" or current.data.tags.get("chiml.kind") == "study":
            self._close(current, "KILLED", "cancelled")
        return self._info(self.client.get_run(run_id))


def _print(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


def _process(tags: dict[str, str]) -> psutil.Process | None:
    """The run's process, if it is still the same one (a pid may be reused)."""
    pid = tags.get("chiml.pid", "")
    if not pid.isdigit():
        return None
    try:
        process = psutil.Process(int(pid))
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        started = tags.get("chiml.pid_started")
        if started and abs(process.create_time() - float(started)) > 1.0:
            return None
        return process
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _stop_process(tags: dict[str, str], grace: float) -> None:
    """SIGINT (Ctrl-C: the process stops the script and closes the run), SIGKILL after ``grace``."""
    process = _process(tags)
    if process is None:
        return
    family = [process, *process.children(recursive=True)]
    process.send_signal(signal.SIGINT)
    _, alive = psutil.wait_procs([process], timeout=grace)
    for survivor in [*alive, *(p for p in family[1:] if p.is_running())]:
        with contextlib.suppress(psutil.NoSuchProcess):
            survivor.kill()


def _tail(path: Path, running: Callable[[], bool] | None, poll: float) -> Iterator[str]:
    """A log file's lines; with ``running``, new lines as they come until it returns False."""
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        pending = ""
        while True:
            chunk = handle.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    yield line + "\n"
                continue
            if running is None or not running():
                rest = pending + handle.read()
                if rest:
                    yield rest
                return
            time.sleep(poll)


def _iso(millis: int | None) -> str:
    if not millis:
        return ""
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")


__all__ = ["RunInfo", "Runs", "process_tags", "start_detached"]

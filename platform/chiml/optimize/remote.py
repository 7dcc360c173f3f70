"""`chiml optimize` on a cluster profile: each runtime is compiled, gated and timed on the node class
that would serve it, as a Kubernetes Job in that runtime's serving image.

What does not depend on the node stays on the laptop, as on the local profile: resolving the
model version, exporting it to ONNX, running the original model on the held-out inputs (the
gate's reference outputs) and building each candidate's artifact directory. These go to the
optimization's MLflow run first; then one Job per candidate runs :mod:`chiml.optimize.bench_pod`
in ``serving-<runtime>`` (services/images.yaml), with the resources its serving pod gets
(helm/values/chiml-runtimes.yaml): a GPU node and the ``nvidia`` RuntimeClass for TensorRT,
whose plan is built there for that GPU. The pods fetch their inputs from, and return their
results to, the in-cluster MLflow; the laptop gates the outputs, picks the fastest that passed
(``--target auto``) and records everything in the same run, as locally.

The original model is timed on the laptop, not on the cluster (no image holds both chiml's
exporters and the runtimes), so the report shows no speedups on a cluster: the choice compares
the runtimes with each other, measured where they will serve.

Whatever happens, every Job goes; a failed or interrupted optimization deletes its run, so the
registry is left as it was.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chiml.cluster import GPU_RESOURCE
from chiml.errors import ChimlError, NotSupportedError
from chiml.kube import incluster, jobs
from chiml.lifecycle import cluster
from chiml.lifecycle.cluster import ClusterSite
from chiml.optimize import bench_pod
from chiml.optimize import candidates as cands
from chiml.optimize.bench import BenchSettings, WorkerResult, read_result, worker_settings
from chiml.optimize.gate import Tolerance
from chiml.optimize.pipeline import Step, decide, judge, prepare, source_params, triton_repository
from chiml.optimize.report import REJECTED, UNAVAILABLE, OptimizeReport, RuntimeRow
from chiml.sites import OptimizeSite

CONTAINER = "bench"
DRY_RUN_ID = "<created-at-submit>"
# on top of the benchmark's own time limit: pulling a runtime image (TensorRT's is several GB)
PULL_ALLOWANCE_S = 900


@dataclass
class Bench:
    """One candidate's Job."""

    candidate: cands.Candidate
    directory: Path
    plan: jobs.JobPlan | None = None


def images() -> dict[str, str]:
    """runtime -> the serving image services/images.yaml names for it."""
    from chiml.images import load_catalog

    catalog = load_catalog()
    return {runtime: catalog.ref(f"serving-{runtime}") for runtime in {c[0] for c in cands.CANDIDATES.values()}
            if f"serving-{runtime}" in catalog.images}


def cluster_candidates(target: str, allow_deepsparse: bool, int8: bool) -> list[cands.Candidate]:
    """The candidates ``target`` asks for, each available unless its runtime has no image or is not
    wanted; whether a node can run it is the scheduler's answer (a TensorRT pod without a GPU node
    stays unschedulable, and the candidate is reported unavailable with the scheduler's reason)."""
    refs = images()
    out = []
    for name in cands.names(target, int8):
        runtime, variant = cands.CANDIDATES[name]
        reason = None
        if runtime not in refs:
            reason = f"no serving-{runtime} image in services/images.yaml"
        elif runtime == "deepsparse" and not (allow_deepsparse or target == name):
            reason = ("not considered: end-of-life, evaluation-only licence "
                      "(opt in with --allow-deepsparse or optimize.allow_deepsparse: true)")
        elif variant == "int8":
            import importlib.util

            if importlib.util.find_spec("onnxruntime") is None:
                reason = "INT8 quantization runs here and needs onnxruntime (pip install chiml[runtimes])"
        out.append(cands.Candidate(name, runtime, variant, python=None if reason else "python", unavailable=reason))
    return out


def cpus(quantity: str) -> int:
    """Whole CPUs of a Kubernetes quantity ("2", "1.5", "500m"), at least one."""
    text = str(quantity)
    value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return max(1, int(value))


def build(site: ClusterSite, candidate: cands.Candidate, *, run_id: str, artifact_root: str,
          files: list[str], settings: BenchSettings, threads: int | None) -> jobs.JobPlan:
    """The Job that times one candidate on the node class its serving pod would get."""
    resources = incluster.serving_resources(site.helm_dir or _source_helm(), candidate.runtime)
    limits = resources.get("limits") or {}
    count = threads or cpus(limits.get("cpu", "2"))
    gpus = int(limits.get(GPU_RESOURCE, 0))
    request = {"engine": candidate.engine, "threads": count, "options": candidate.options,
               "batches": list(settings.batches), "warmup_s": settings.warmup_s, "budget_s": settings.budget_s,
               "min_iters": settings.min_iters, "max_iters": settings.max_iters}
    spec = {"candidate": candidate.name, "files": files, "inputs": "gate/gate-inputs.npz", "request": request}
    return jobs.JobPlan(
        name=cluster.job_name("optimize", candidate.name),
        namespace=site.namespace,
        kind="optimize",
        image=images()[candidate.runtime],
        command=["python", f"{jobs.CODE_MOUNT}/bench_pod.py"],
        env={"CHIML_ARTIFACTS_URL": f"{site.mlflow_uri}/api/2.0/mlflow-artifacts/artifacts/{artifact_root}",
             "CHIML_BENCH": json.dumps(spec), "CHIML_WORKDIR": jobs.WORKDIR, "HOME": "/tmp",
             "PYTHONUNBUFFERED": "1", **worker_settings(count)},
        files={"bench_pod.py": Path(bench_pod.__file__).read_text(encoding="utf-8")},
        container=CONTAINER,
        gpus=gpus,
        cpu=str(count),
        cpu_limit=str(count),  # the runtime gets exactly its threads' worth of CPU, as when it serves
        memory=str(limits.get("memory", "4Gi")),
        timeout=settings.timeout_s + PULL_ALLOWANCE_S,
        ttl_seconds=600,
        run_as=None,  # the serving image's own non-root user
        labels=cluster.run_label(run_id),
    )


def _source_helm() -> Path:
    from chiml.paths import repo_root

    root = repo_root()
    if root is None:
        raise ChimlError("cannot find the helm/ directory", hint="set kubernetes.helm_dir in chiml.yaml")
    return root / "helm"


def artifact_root(run: Any) -> str:
    """The run's artifacts as a path under MLflow's artifact proxy (``mlflow-artifacts:/1/<run>/artifacts``)."""
    uri = str(run.info.artifact_uri)
    if not uri.startswith("mlflow-artifacts:"):
        raise NotSupportedError(f"the platform's MLflow stores artifacts at {uri}: optimize on a cluster needs "
                                "MLflow's artifact proxy (mlflow-artifacts:), as helm/values/mlflow.yaml sets it")
    rest = uri.removeprefix("mlflow-artifacts:").lstrip("/")
    if uri.startswith("mlflow-artifacts://"):
        rest = rest.split("/", 1)[1]  # mlflow-artifacts://<host>/<path>
    return rest


def optimize_on_cluster(platform: OptimizeSite, model_uri: str, target: str, *, settings: BenchSettings,
                        threads: int | None, tolerance: Tolerance, objective: str, allow_deepsparse: bool, int8: bool,
                        sample: str | Path | None, params: dict[str, Any], step: Step | None = None,
                        dry_run: bool = False, site: ClusterSite | None = None, poll: float = 2.0) -> Any:
    """The report (or, with ``dry_run``, the Jobs it would create, one per candidate)."""
    from chiml.lifecycle import mlflow_client
    from chiml.optimize import tracking
    from chiml.optimize.source import resolve_source

    say = step or (lambda _message: None)
    planned = cluster_candidates(target, allow_deepsparse, int8)
    if target != "auto" and planned[0].unavailable:
        raise NotSupportedError(f"{target} is unavailable on the cluster: {planned[0].unavailable}")
    if dry_run:
        site = site or cluster.cluster_site(platform, connect=False)
        plans = [build(site, c, run_id=DRY_RUN_ID, artifact_root=f"<experiment>/{DRY_RUN_ID}/artifacts",
                       files=["model.onnx", "chiml-runtime.json"], settings=settings, threads=threads)
                 for c in planned if not c.unavailable]
        return [obj for plan in plans for obj in jobs.objects(plan)]
    site = site or cluster.cluster_site(platform)
    tracking_uri = mlflow_client.connect(platform).tracking_uri  # credentials exported for the downloads
    home = Path(platform.home)
    (home / "optimize").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=home / "optimize"))
    benches: list[Bench] = []
    run_id: str | None = None
    client = None
    report: OptimizeReport | None = None
    with mlflow_client.quiet():
        try:
            say(f"resolving {model_uri}")
            source = resolve_source(tracking_uri, model_uri, workdir, Path(sample) if sample else None)
            prepared = prepare(flavor=source.flavor, model_dir=source.local_dir, inputs=source.inputs,
                               sample=source.sample, workdir=workdir, settings=settings, objective=objective,
                               model_uri=model_uri, model_name=source.name, model_version=source.version, step=say)
            report = prepared.report
            report.threads = threads or 0  # per runtime: its serving pod's CPU limit
            prepared.baseline.reason = "original model, run here for the gate's reference outputs (not timed on " \
                                       "the cluster: no speedups)"
            origin = {"model_uri": source.pinned_uri, "run_id": source.run_id, "sample": source.sample_origin}
            interface = cands.served_interface(source.local_dir)
            for candidate in planned:
                if candidate.unavailable:
                    continue
                try:
                    directory = cands.build_artifact(candidate, prepared.exported, workdir / "artifacts", origin,
                                                     interface)
                except ValueError as err:
                    report.rows.append(RuntimeRow(candidate.name, candidate.runtime, REJECTED, reason=str(err)))
                    candidate.unavailable = "rejected"
                    continue
                benches.append(Bench(candidate, directory))
            client = mlflow_client.client(tracking_uri)
            run_id = tracking.start_run(client, report)
            say("storing the export and the candidates with the run")
            tracking.log_inputs(client, run_id, report, workdir, prepared.exported.path, prepared.inputs_npz,
                                {b.candidate.name: b.directory for b in benches})
            root = artifact_root(client.get_run(run_id))
            for bench in benches:
                files = sorted(str(p.relative_to(bench.directory)) for p in bench.directory.rglob("*") if p.is_file())
                bench.plan = build(site, bench.candidate, run_id=run_id, artifact_root=root, files=files,
                                   settings=settings, threads=threads)
                cluster.submit(site.api, bench.plan)
                say(f"{bench.candidate.name}: Job {bench.plan.name} ({bench.plan.image}"
                    f"{', 1 GPU' if bench.plan.gpus else ''})")
            results = _wait(site.api, client, run_id, benches, poll, say)
            measured: dict[str, Path] = {}
            triton_dir = None
            for candidate in planned:
                if candidate.unavailable == "rejected":
                    continue
                row = RuntimeRow(candidate.name, candidate.runtime, UNAVAILABLE,
                                 reason=candidate.unavailable or "")
                report.rows.append(row)
                if candidate.unavailable:
                    continue
                outcome = results[candidate.name]
                if isinstance(outcome, str):
                    row.reason = outcome
                    continue
                if judge(row, outcome, prepared, tolerance):
                    bench = next(b for b in benches if b.candidate.name == candidate.name)
                    measured[candidate.name] = bench.directory
                    if candidate.runtime == "tensorrt":
                        triton_dir = _triton_from_run(client, run_id, workdir, source.name)
            decide(prepared, objective, settings, measured, comparable=False)
            say("recording the optimization in MLflow")
            run_params = {**params, **source_params(source, prepared.exported), "threads": threads or "serving limit",
                          "where": f"kubernetes:{site.namespace}"}
            tracking.log_results(client, run_id, report, workdir, run_params, triton_dir)
            tracking.tag_version(client, report)
            return report
        except BaseException:
            if client is not None and run_id is not None and report is not None:
                tracking.discard(client, report, run_id)
            raise
        finally:
            for bench in benches:
                if bench.plan is not None:
                    cluster.delete(site.api, bench.plan.namespace, bench.plan.name)
            shutil.rmtree(workdir, ignore_errors=True)


def _wait(api: Any, client: Any, run_id: str, benches: list[Bench], poll: float,
          say: Step) -> dict[str, WorkerResult | str]:
    """Each candidate's result (read back from the run), or why it has none, once every pod ended."""
    pending = {b.candidate.name: b for b in benches}
    outcomes: dict[str, WorkerResult | str] = {}
    phases: dict[str, str] = {}
    while pending:
        for name, bench in list(pending.items()):
            plan = bench.plan
            assert plan is not None
            pod = api.job_pod(plan.namespace, plan.name)
            job = api.read_job(plan.namespace, plan.name)
            phase = pod.status.phase if pod is not None and pod.status is not None else "Pending"
            if phases.get(name) != phase:
                say(f"{name}: pod {phase}")
                phases[name] = phase
            if pod is None:
                failed = cluster.job_failure(job)
                if failed:
                    outcomes[name] = f"the Job failed: {failed}"
                    del pending[name]
                continue
            if phase == "Pending":
                reason = cluster.pending_failure(pod)
                if reason:
                    outcomes[name] = reason if "no node" not in reason else f"{reason} (no node of its class)"
                    del pending[name]
            elif phase in ("Succeeded", "Failed"):
                outcomes[name] = _result_of(client, run_id, bench, pod, job)
                del pending[name]
        if pending:
            time.sleep(poll)
    return outcomes


def _result_of(client: Any, run_id: str, bench: Bench, pod: Any, job: Any) -> WorkerResult | str:
    """The worker's result the pod stored with the run, or why there is none."""
    outcome = cluster.terminal_outcome(pod, job, CONTAINER)
    if outcome.status != "FINISHED":
        state = cluster.container_state(pod, CONTAINER)
        message = cluster.last_line(state.terminated.message if state is not None and state.terminated else None)
        return outcome.error or message or f"the benchmark pod failed (exit {outcome.exit_code})"
    with tempfile.TemporaryDirectory(prefix="chiml-bench-") as folder:
        try:
            local = Path(client.download_artifacts(run_id, f"{bench_pod.RESULTS}/{bench.candidate.name}", folder))
        except Exception as err:
            return f"the pod stored no result: {err}"
        result = read_result(local / "result.json", local / "outputs.npz")
    return result if result is not None else "the pod stored no result"


def _triton_from_run(client: Any, run_id: str, workdir: Path, model_name: str) -> Path | None:
    """The TensorRT plan the GPU pod built, laid out as a Triton model repository."""
    folder = workdir / "from-cluster"
    try:
        local = Path(client.download_artifacts(run_id, "runtimes/tensorrt", str(folder)))
    except Exception:
        return None
    return triton_repository(local, workdir / "triton", model_name or "model")

"""`chiml optimize`: export → compile per runtime → gate → benchmark → pick → record.

Nothing is written to MLflow until the model has been resolved and exported, and the model
version is tagged only once the run holding the artifacts is complete: a bad model, a missing
runtime or a failed export leaves the registry exactly as it was.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chiml.errors import ChimlError, InvalidInputError, NotSupportedError
from chiml.optimize import candidates as cands
from chiml.optimize.bench import BenchSettings, WorkerResult, run_worker
from chiml.optimize.export import ExportResult, export
from chiml.optimize.gate import Tolerance, compare
from chiml.optimize.report import BASELINE_STATUS, OK, REJECTED, UNAVAILABLE, OptimizeReport, RuntimeRow
from chiml.optimize.source import InputSpec
from chiml.sites import OptimizeSite

Step = Callable[[str], None]
BASELINE_ENGINE = "chiml.optimize.baseline:OriginalModelEngine"
FRAMEWORK = {"pytorch": "torch eager", "sklearn": "scikit-learn", "tensorflow": "keras", "xgboost": "xgboost",
             "lightgbm": "lightgbm", "catboost": "catboost"}


@dataclass
class Measured:
    """What :func:`measure` produced (the report plus the files to record)."""

    report: OptimizeReport
    exported: ExportResult
    artifact_dirs: dict[str, Path] = field(default_factory=dict)
    inputs_npz: Path | None = None
    triton_dir: Path | None = None  # Triton model repository (TensorRT plan + config.pbtxt)


_UNSUPPORTED = (
    re.compile(r"No conversion rule found for operations?: ([^\n]+?)(?: -- |$)"),  # OpenVINO
    re.compile(r"Could not find an implementation for (\S+?)\(\d+\)"),  # ONNX Runtime
    re.compile(r"[Uu]nsupported (?:operator|op|node)s?:? '?([\w.]+)"),
)


def brief(error: str, limit: int = 240) -> str:
    """One short line for the table; unsupported operators are named (the full text is in the JSON)."""
    text = " ".join(error.split())
    for pattern in _UNSUPPORTED:
        match = pattern.search(text)
        if match:
            return f"unsupported operator(s): {match.group(1).strip(' -')}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _speedup(row: RuntimeRow, baseline: RuntimeRow, objective: str, batch: int) -> float | None:
    if objective == "throughput":
        return row.throughput / baseline.throughput if row.throughput and baseline.throughput else None
    if batch in row.p50_ms and batch in baseline.p50_ms and row.p50_ms[batch] > 0:
        return baseline.p50_ms[batch] / row.p50_ms[batch]
    return None


def choose(rows: list[RuntimeRow], objective: str, batch: int) -> RuntimeRow | None:
    """The fastest candidate that passed the gate, per the objective."""
    passed = [row for row in rows if row.status == OK and row.p50_ms]
    if not passed:
        return None
    if objective == "throughput":
        return max(passed, key=lambda row: row.throughput or 0.0)
    return min(passed, key=lambda row: row.p50_ms.get(batch, float("inf")))


def _fill_timings(row: RuntimeRow, timings: dict[int, dict[str, float]]) -> None:
    row.p50_ms = {b: t["p50_ms"] for b, t in timings.items()}
    row.p99_ms = {b: t["p99_ms"] for b, t in timings.items()}
    row.throughput = max(t["throughput"] for t in timings.values())


@dataclass
class Prepared:
    """The model exported, the held-out inputs saved and the original model measured: what every
    candidate is judged against."""

    report: OptimizeReport
    exported: ExportResult
    inputs_npz: Path
    baseline: RuntimeRow
    reference: dict[str, np.ndarray]  # the original model's outputs on the held-out inputs


def prepare(*, flavor: str, model_dir: Path, inputs: list[InputSpec], sample: dict[str, np.ndarray],
            workdir: Path, settings: BenchSettings, objective: str = "latency", model_uri: str = "",
            model_name: str = "", model_version: str = "", step: Step | None = None) -> Prepared:
    """Export to ONNX and run the original model on the held-out inputs (its outputs and timings)."""
    import sys

    say = step or (lambda _message: None)
    say(f"exporting the {flavor} model to ONNX")
    exported = export(flavor, model_dir, inputs, sample, workdir / "onnx")
    inputs_npz = workdir / "gate-inputs.npz"
    np.savez(inputs_npz, **sample)  # type: ignore[arg-type]  # numpy types **kwds as its allow_pickle: bool
    report = OptimizeReport(model_uri=model_uri, model_name=model_name, model_version=model_version,
                            objective=objective, threads=settings.threads, batches=list(settings.batches), rows=[],
                            onnx={"opset": exported.opset, "ir_version": exported.ir_version,
                                  "exporter": exported.exporter, "inputs": exported.inputs,
                                  "outputs": exported.outputs, "task": exported.task})
    say(f"measuring the original model ({FRAMEWORK[flavor]})")
    baseline_options = {
        "flavor": flavor, "inputs": [spec.name for spec in inputs],
        "dtypes": {spec.name: spec.dtype for spec in inputs}, "columns": inputs[0].columns,
        "outputs": [item["name"] for item in exported.outputs], "task": exported.task,
        "output_shapes": {item["name"]: item["shape"] for item in exported.outputs},
    }
    base = run_worker(sys.executable, BASELINE_ENGINE, model_dir, inputs_npz, workdir / "runs", "original", settings,
                      baseline_options)
    if not base.ok:
        raise ChimlError(f"the original model failed to run on the held-out inputs ({base.stage}): {base.error}")
    baseline = RuntimeRow(FRAMEWORK[flavor], flavor, BASELINE_STATUS, reason="original model (reference)")
    _fill_timings(baseline, base.timings)
    report.rows.append(baseline)
    return Prepared(report, exported, inputs_npz, baseline, base.outputs)


def judge(row: RuntimeRow, result: WorkerResult, prepared: Prepared, tolerance: Tolerance) -> bool:
    """Fill a candidate's row from its worker's result: rejected with the reason, or timed and
    gated against the original's outputs. True when it passed."""
    if not result.ok:
        stage = {"load": "cannot load/compile", "gate": "failed on the held-out inputs",
                 "bench": "failed while timing"}.get(result.stage or "", "failed")
        row.status, row.reason, row.detail = REJECTED, f"{stage}: {brief(result.error or '')}", result.error or ""
        return False
    gate = compare(prepared.reference, result.outputs, tolerance, prepared.exported.task)
    row.gate = gate.to_json()
    _fill_timings(row, result.timings)
    if gate.passed:
        row.status = OK
        return True
    row.status = REJECTED
    row.reason = f"outside tolerance: {gate.summary()} ({'; '.join(gate.failures)})"
    return False


def decide(prepared: Prepared, objective: str, settings: BenchSettings, measured: dict[str, Path],
           comparable: bool = True) -> None:
    """Speedups over the original (when timed on the same machine) and the fastest that passed."""
    report, baseline = prepared.report, prepared.baseline
    batch = min(settings.batches)
    for row in report.rows:
        if comparable and ((row.status in (OK, REJECTED) and row.p50_ms) or row is baseline):
            row.speedup = _speedup(row, baseline, objective, batch)
    winner = choose(report.rows, objective, batch)
    if winner is not None:
        report.chosen, report.chosen_runtime = winner.name, winner.runtime
        for name in measured:
            report.row(name).artifact_path = f"runtimes/{name}"


def measure(*, flavor: str, model_dir: Path, inputs: list[InputSpec], sample: dict[str, np.ndarray],
            workdir: Path, candidates: list[cands.Candidate], settings: BenchSettings, tolerance: Tolerance,
            objective: str = "latency", model_uri: str = "", model_name: str = "", model_version: str = "",
            source: dict[str, Any] | None = None, step: Step | None = None) -> Measured:
    """Export, build each candidate's artifact, run the gate and the benchmark here; no MLflow involved."""
    say = step or (lambda _message: None)
    prepared = prepare(flavor=flavor, model_dir=model_dir, inputs=inputs, sample=sample, workdir=workdir,
                       settings=settings, objective=objective, model_uri=model_uri, model_name=model_name,
                       model_version=model_version, step=step)
    report = prepared.report
    measured: dict[str, Path] = {}
    triton_dir: Path | None = None
    interface = cands.served_interface(model_dir)
    for candidate in candidates:
        row = RuntimeRow(candidate.name, candidate.runtime, UNAVAILABLE)
        report.rows.append(row)
        if candidate.unavailable or candidate.python is None:
            row.reason = candidate.unavailable or "unavailable"
            continue
        say(f"compiling and measuring {candidate.name}")
        try:
            directory = cands.build_artifact(candidate, prepared.exported, workdir / "artifacts", source or {},
                                             interface)
        except ValueError as err:
            row.status, row.reason = REJECTED, str(err)
            continue
        result = run_worker(candidate.python, candidate.engine, directory, prepared.inputs_npz, workdir / "runs",
                            candidate.name, settings)
        if judge(row, result, prepared, tolerance):
            measured[candidate.name] = directory
            if candidate.runtime == "tensorrt":
                triton_dir = triton_repository(directory, workdir / "triton", model_name or "model")
    decide(prepared, objective, settings, measured)
    return Measured(report, prepared.exported, measured, prepared.inputs_npz, triton_dir)


def triton_repository(artifact: Path, repo: Path, name: str) -> Path | None:
    """The plan the worker built (and cached beside the artifact), laid out for Triton."""
    from chiml.optimize.triton import write_repository
    from chiml_contract.artifact import RuntimeSpec

    plans = sorted((artifact / "engines").glob("*.plan"))
    if not plans:
        return None
    write_repository(repo, re.sub(r"[^A-Za-z0-9_.-]", "-", name), RuntimeSpec.read(artifact), plans[-1].read_bytes())
    return repo


def source_params(source: Any, exported: ExportResult) -> dict[str, Any]:
    """The run parameters that describe the model and its export."""
    return {"sample": source.sample_origin, "held_out_rows": next(iter(source.sample.values())).shape[0],
            "opset": exported.opset, "ir_version": exported.ir_version, "source_run_id": source.run_id or ""}


def optimize(platform: OptimizeSite, model_uri: str, target: str = "auto", *, objective: str | None = None,
             allow_deepsparse: bool | None = None, int8: bool = False, sample: str | Path | None = None,
             batches: tuple[int, ...] | None = None, threads: int | None = None, budget_s: float = 1.0,
             atol: float | None = None, rtol: float | None = None, min_top1: float | None = None,
             step: Step | None = None, dry_run: bool = False) -> Any:
    """Optimize a registered model version; returns the report (``report.chosen`` is None if none passed).

    On the kubernetes and chameleon profiles every runtime is measured in a Job on the node class
    that serves it (:mod:`chiml.optimize.remote`); ``dry_run`` then returns those Jobs instead.
    """
    from chiml.lifecycle import mlflow_client
    from chiml.lifecycle.train import CLUSTER_PROFILES
    from chiml.optimize import tracking
    from chiml.optimize.source import resolve_source

    config = platform.config.optimize
    objective = objective or config.objective
    if objective not in ("latency", "throughput"):
        raise InvalidInputError(f"unknown objective {objective!r}: choose latency or throughput")
    allow = config.allow_deepsparse if allow_deepsparse is None else allow_deepsparse
    tolerance = Tolerance(atol=config.atol if atol is None else atol, rtol=config.rtol if rtol is None else rtol,
                          min_top1=config.min_top1 if min_top1 is None else min_top1)
    settings = BenchSettings(batches=tuple(batches or config.batch_sizes), budget_s=budget_s)
    if threads:
        settings.threads = threads
    if target not in cands.TARGETS:
        raise InvalidInputError(f"unknown target {target!r}: choose one of {', '.join(cands.TARGETS)}")
    params = {"target": target, "objective": objective, "batches": ",".join(map(str, settings.batches)),
              "atol": tolerance.atol, "rtol": tolerance.rtol, "min_top1": tolerance.min_top1}
    if platform.profile.name in CLUSTER_PROFILES:
        from chiml.optimize.remote import optimize_on_cluster

        return optimize_on_cluster(platform, model_uri, target, settings=settings, threads=threads,
                                   tolerance=tolerance, objective=objective, allow_deepsparse=allow, int8=int8,
                                   sample=sample, params=params, step=step, dry_run=dry_run)
    if dry_run:
        raise NotSupportedError("--dry-run is for cluster profiles: on the local profile nothing is created")
    say = step or (lambda _message: None)
    tracking_uri = mlflow_client.connect(platform).tracking_uri  # credentials exported for the downloads
    home = Path(platform.home)
    (home / "optimize").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=home / "optimize"))
    with mlflow_client.quiet():
        try:
            say(f"resolving {model_uri}")
            source = resolve_source(tracking_uri, model_uri, workdir, Path(sample) if sample else None)
            planned = cands.plan(target, home, allow_deepsparse=allow, int8=int8, step=say)
            if target != "auto":
                missing = [c for c in planned if c.name == target and c.unavailable]
                if missing:
                    raise NotSupportedError(f"{target} is unavailable here: {missing[0].unavailable}")
            measured = measure(
                flavor=source.flavor, model_dir=source.local_dir, inputs=source.inputs, sample=source.sample,
                workdir=workdir, candidates=planned, settings=settings, tolerance=tolerance, objective=objective,
                model_uri=model_uri, model_name=source.name, model_version=source.version,
                source={"model_uri": source.pinned_uri, "run_id": source.run_id, "sample": source.sample_origin},
                step=say)
            report = measured.report
            say("recording the optimization in MLflow")
            client = mlflow_client.client(tracking_uri)
            params.update(threads=settings.threads, **source_params(source, measured.exported))
            tracking.log_report(client, report, workdir, measured.exported.path, measured.artifact_dirs,
                                measured.inputs_npz or workdir / "gate-inputs.npz", params, measured.triton_dir)
            tracking.tag_version(client, report)
            return report
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

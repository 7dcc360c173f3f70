"""Record an optimization in MLflow, tied to the model version it came from.

One run per optimization in the ``chiml-optimize`` experiment, tagged with the model's name and
version; it holds the ONNX export, every compiled artifact (``runtimes/<candidate>/``), the
held-out inputs used by the gate, the report (JSON, an MLflow table and a plot) and the
latency/throughput metrics. The model version gets ``chiml.optimize.*`` tags pointing back
at the run and the chosen runtime — set last, only once the run is complete.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from chiml.optimize.report import OK, OptimizeReport

EXPERIMENT = "chiml-optimize"
TAG_MODEL = "chiml.model.name"
TAG_VERSION = "chiml.model.version"
TAG_SOURCE = "chiml.model.uri"
TAG_CHOSEN = "chiml.optimize.chosen"
TAG_PASSED = "chiml.optimize.passed"
VERSION_TAG_RUN = "chiml.optimize.run_id"
VERSION_TAG_CHOSEN = "chiml.optimize.chosen"
VERSION_TAG_RUNTIME = "chiml.optimize.runtime"


def experiment_id(client: Any) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(EXPERIMENT)
    except MlflowException:  # created concurrently
        return client.get_experiment_by_name(EXPERIMENT).experiment_id


def _plot(report: OptimizeReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in report.rows if row.p50_ms]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(rows), 1)
    for index, row in enumerate(rows):
        xs = [b + (index - (len(rows) - 1) / 2) * width for b in range(len(report.batches))]
        ax.bar(xs, [row.p50_ms.get(b, 0.0) for b in report.batches], width,
               label=f"{row.name} ({row.speedup:.1f}x)" if row.speedup else row.name)
    ax.set_xticks(range(len(report.batches)), [f"batch {b}" for b in report.batches])
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency (ms, log scale)")
    ax.set_title(f"{report.model_name} v{report.model_version}: latency per runtime")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _metrics(report: OptimizeReport) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for row in report.rows:
        for batch, value in row.p50_ms.items():
            metrics[f"{row.name}/b{batch}_p50_ms"] = value
            metrics[f"{row.name}/b{batch}_p99_ms"] = row.p99_ms[batch]
        if row.throughput:
            metrics[f"{row.name}/throughput"] = row.throughput
        if row.speedup:
            metrics[f"{row.name}/speedup"] = row.speedup
        if row.gate:
            metrics[f"{row.name}/gate_max_abs"] = row.gate["max_abs"]
    return metrics


def start_run(client: Any, report: OptimizeReport) -> str:
    """The optimization's run, tagged with the model version it came from."""
    tags = {TAG_MODEL: report.model_name, TAG_VERSION: report.model_version, TAG_SOURCE: report.model_uri,
            "mlflow.runName": f"optimize-{report.model_name}-v{report.model_version}"}
    return str(client.create_run(experiment_id(client), tags=tags).info.run_id)


def log_inputs(client: Any, run_id: str, report: OptimizeReport, workdir: Path, onnx_path: Path,
               inputs_npz: Path, artifact_dirs: dict[str, Path]) -> None:
    """The ONNX export with its signature, the gate's held-out inputs and each compiled artifact."""
    client.log_artifact(run_id, str(onnx_path), "onnx")
    signature = workdir / "signature.json"  # inputs/outputs, opset, IR version, exporter, task
    signature.write_text(json.dumps(report.onnx, indent=2), encoding="utf-8")
    client.log_artifact(run_id, str(signature), "onnx")
    client.log_artifact(run_id, str(inputs_npz), "gate")
    for name, directory in artifact_dirs.items():
        client.log_artifacts(run_id, str(directory), f"runtimes/{name}")


def log_results(client: Any, run_id: str, report: OptimizeReport, workdir: Path, params: dict[str, Any],
                triton_dir: Path | None = None) -> None:
    """Metrics, parameters, the report (JSON, table, plot) and the choice; the run ends FINISHED."""
    from mlflow.entities import Metric, Param, RunTag

    passed = [row.name for row in report.rows if row.status == OK]
    tags = {TAG_CHOSEN: report.chosen or "", TAG_PASSED: ",".join(passed)}
    timestamp = client.get_run(run_id).info.start_time
    client.log_batch(
        run_id,
        metrics=[Metric(key, value, timestamp, 0) for key, value in _metrics(report).items()],
        params=[Param(key, str(value)[:6000]) for key, value in params.items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )
    if triton_dir is not None:
        client.log_artifacts(run_id, str(triton_dir), "triton")
    report.run_id = run_id
    report_path = workdir / "report.json"
    report_path.write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
    client.log_artifact(run_id, str(report_path))
    client.log_artifact(run_id, str(_plot(report, workdir / "latency.png")))
    table: dict[str, list[Any]] = {"runtime": [], "status": [], "reason": [], "speedup": [], "throughput": []}
    for batch in report.batches:
        table[f"p50_ms_b{batch}"] = []
        table[f"p99_ms_b{batch}"] = []
    for row in report.rows:
        table["runtime"].append(row.name)
        table["status"].append(row.status)
        table["reason"].append(row.reason)
        table["speedup"].append(row.speedup)
        table["throughput"].append(row.throughput)
        for batch in report.batches:
            table[f"p50_ms_b{batch}"].append(row.p50_ms.get(batch))
            table[f"p99_ms_b{batch}"].append(row.p99_ms.get(batch))
    client.log_table(run_id, table, "runtimes.json")
    client.set_terminated(run_id, "FINISHED")


def discard(client: Any, report: OptimizeReport, run_id: str) -> None:
    """Delete a half-logged run: a failed optimization leaves the registry as it was."""
    report.run_id = None
    with contextlib.suppress(Exception):  # best effort: the original error matters more
        client.delete_run(run_id)


def log_report(client: Any, report: OptimizeReport, workdir: Path, onnx_path: Path,
               artifact_dirs: dict[str, Path], inputs_npz: Path, params: dict[str, Any],
               triton_dir: Path | None = None) -> str:
    """Create the run and log everything; a failure deletes the half-logged run."""
    run_id = start_run(client, report)
    try:
        log_inputs(client, run_id, report, workdir, onnx_path, inputs_npz, artifact_dirs)
        log_results(client, run_id, report, workdir, params, triton_dir)
    except BaseException:
        discard(client, report, run_id)
        raise
    return run_id


def tag_version(client: Any, report: OptimizeReport) -> None:
    """Point the model version at this optimization (only when a runtime was chosen)."""
    if not report.chosen or not report.run_id:
        return
    client.set_model_version_tag(report.model_name, report.model_version, VERSION_TAG_RUN, report.run_id)
    client.set_model_version_tag(report.model_name, report.model_version, VERSION_TAG_CHOSEN, report.chosen)
    client.set_model_version_tag(report.model_name, report.model_version, VERSION_TAG_RUNTIME,
                                 report.chosen_runtime or "")

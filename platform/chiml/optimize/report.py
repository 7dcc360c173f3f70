"""The optimization report: one row per runtime tried, and the choice (the CLI renders it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OK, REJECTED, UNAVAILABLE = "ok", "rejected", "unavailable"
BASELINE_STATUS = "baseline"


@dataclass
class RuntimeRow:
    name: str  # candidate name (e.g. onnxruntime-int8) or the original framework
    runtime: str  # serving runtime, or "torch"/"sklearn" for the original
    status: str  # ok | rejected | unavailable | baseline
    reason: str = ""
    p50_ms: dict[int, float] = field(default_factory=dict)
    p99_ms: dict[int, float] = field(default_factory=dict)
    throughput: float | None = None  # best samples/s over the batch sizes
    speedup: float | None = None  # over the original, per the objective
    gate: dict[str, Any] | None = None
    artifact_path: str | None = None  # MLflow artifact path of the compiled model
    detail: str = ""  # the full error behind a short reason

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["p50_ms"] = {str(k): v for k, v in self.p50_ms.items()}
        data["p99_ms"] = {str(k): v for k, v in self.p99_ms.items()}
        return data


@dataclass
class OptimizeReport:
    model_uri: str
    model_name: str
    model_version: str
    objective: str
    threads: int
    batches: list[int]
    rows: list[RuntimeRow]
    chosen: str | None = None
    chosen_runtime: str | None = None
    run_id: str | None = None
    onnx: dict[str, Any] = field(default_factory=dict)

    def row(self, name: str) -> RuntimeRow:
        return next(row for row in self.rows if row.name == name)

    @property
    def baseline(self) -> RuntimeRow:
        return next(row for row in self.rows if row.status == BASELINE_STATUS)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [row.to_json() for row in self.rows]
        return data

    def table_rows(self) -> tuple[str, list[str], list[list[str]]]:
        """(title, columns, rows) of the report as `chiml optimize` shows it (cells may hold rich markup)."""
        title = f"{self.model_uri} (v{self.model_version}) · objective: {self.objective} · {self.threads} thread(s)"
        columns = ["runtime", "status", *(f"p50/p99 b{batch} (ms)" for batch in self.batches),
                   "throughput (/s)", "speedup", "gate / reason"]
        rows = []
        for row in self.rows:
            name = f"[bold green]{row.name} ✔[/]" if row.name == self.chosen else row.name
            status = {"ok": "[green]ok[/]", "rejected": "[red]rejected[/]",
                      "unavailable": "[yellow]unavailable[/]"}.get(row.status, row.status)
            cells = [f"{row.p50_ms[b]:.3f}/{row.p99_ms[b]:.3f}" if b in row.p50_ms else "–" for b in self.batches]
            throughput = f"{row.throughput:,.0f}" if row.throughput else "–"
            speedup = f"{row.speedup:.1f}x" if row.speedup else "–"
            detail = row.reason
            if row.gate and not detail:
                detail = _gate_text(row.gate)
            rows.append([name, status, *cells, throughput, speedup, detail])
        return title, columns, rows


def _gate_text(gate: dict[str, Any]) -> str:
    text = f"max abs {gate['max_abs']:.1e}, max rel {gate['max_rel']:.1e}"
    if gate.get("top1") is not None:
        text += f", top-1 {gate['top1']:.1%}"
    return text

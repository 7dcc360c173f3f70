"""Optimized runtimes vs the framework the model was trained in, on reference models.

Goal: the runtime chiml chooses is >= 4x faster than torch eager at batch 1 and
>= 2x at batch 64 (p50 latency). Models: the digits MLP, a small CNN on the 8x8 digits, and a
scikit-learn logistic regression (compared with scikit-learn itself). Everything runs through
the same path as `chiml optimize` (export, one process per runtime, gate, timing) minus the
MLflow server: models are saved with mlflow.<flavor>.save_model to a temporary directory.
Every runtime and the original get the same intra-op thread count (all cores available to
this process) and run one after another, never concurrently.

Usage: python benchmarks/bench_runtimes.py [--no-deepsparse] [--budget SECONDS]
DeepSparse (end-of-life, evaluation licence) is measured in its own environment, created
under a temporary CHIML_HOME on first run unless --no-deepsparse.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.optimize import models  # noqa: E402

GOAL_B1 = 4.0
GOAL_B64 = 2.0
BATCHES = (1, 8, 64)
ENV_HOME = Path(tempfile.gettempdir()) / "chiml-bench-runtimes-home"  # keeps the DeepSparse env between runs


def _train_cnn() -> Any:
    import torch

    cnn = models.DigitsCNN.build()
    x, y, _, _ = models.digits()
    optimizer = torch.optim.Adam(cnn.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    cnn.train()
    for _ in range(15):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(cnn(xt), yt).backward()
        optimizer.step()
    return cnn.eval()


def _save(kind: str, model: Any, path: Path) -> str:
    from mlflow.models import infer_signature

    _, _, held, _ = models.digits()
    if kind == "pytorch":
        import mlflow.pytorch
        import torch

        with torch.no_grad():
            out = model(torch.from_numpy(held)).numpy()
        mlflow.pytorch.save_model(model, str(path), signature=infer_signature(held, out), input_example=held)
    else:
        import mlflow.sklearn

        mlflow.sklearn.save_model(model, str(path), signature=infer_signature(held, model.predict(held)),
                                  input_example=held, serialization_format="cloudpickle")
    return kind


def run_model(name: str, kind: str, model: Any, workdir: Path, deepsparse: bool, budget: float,
              threads: int | None) -> dict[str, Any]:
    from chiml.optimize import candidates as cands
    from chiml.optimize.bench import BenchSettings
    from chiml.optimize.gate import Tolerance
    from chiml.optimize.pipeline import measure
    from chiml.optimize.source import InputSpec

    _, _, held, _ = models.digits()
    model_dir = workdir / name / "model"
    _save(kind, model, model_dir)
    planned = cands.plan("auto", ENV_HOME, allow_deepsparse=deepsparse, step=lambda m: print(f"  · {m}"))
    settings = BenchSettings(batches=BATCHES, budget_s=budget)
    if threads:
        settings.threads = threads
    measured = measure(flavor=kind, model_dir=model_dir, inputs=[InputSpec("input", "float32", [-1, 64])],
                       sample={"input": held}, workdir=workdir / name, candidates=planned, settings=settings,
                       tolerance=Tolerance(), model_uri=name, model_name=name, model_version="bench",
                       step=lambda m: print(f"  · {m}", flush=True))
    return measured.report.to_json() | {"_table": measured.report}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-deepsparse", action="store_true", help="skip DeepSparse (and its environment)")
    parser.add_argument("--budget", type=float, default=1.0, help="timed seconds per runtime and batch size")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads for every runtime and the original (default: all available cores)")
    args = parser.parse_args()
    from chiml.cli.common import print_table
    reference = [
        ("digits-mlp", "pytorch", models.torch_mlp()),
        ("digits-cnn", "pytorch", _train_cnn()),
        ("digits-logreg", "sklearn", models.sklearn_logreg()),
    ]
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chiml-bench-runtimes-") as tmp:
        for name, kind, model in reference:
            print(f"{name}:", flush=True)
            result = run_model(name, kind, model, Path(tmp), not args.no_deepsparse, args.budget, args.threads)
            print_table(*result.pop("_table").table_rows())
            results.append(result)

    summary = []
    for result in results:
        rows = {row["name"]: row for row in result["rows"]}
        base = next(row for row in result["rows"] if row["status"] == "baseline")
        chosen = rows.get(result["chosen"]) if result["chosen"] else None
        entry: dict[str, Any] = {"model": result["model_name"], "baseline": base["name"], "chosen": result["chosen"]}
        for batch in (1, 64):
            key = str(batch)
            entry[f"speedup_b{batch}"] = (round(base["p50_ms"][key] / chosen["p50_ms"][key], 2)
                                          if chosen and key in chosen["p50_ms"] else None)
        if base["name"] == "torch eager":
            entry["meets_goal"] = bool(entry["speedup_b1"] and entry["speedup_b1"] >= GOAL_B1
                                       and entry["speedup_b64"] and entry["speedup_b64"] >= GOAL_B64)
        summary.append(entry)

    print(f"\n{'model':<15} {'vs':<13} {'chosen':<17} {'b1':>7} {'b64':>7}  goal (torch): >= {GOAL_B1:.0f}x at b1, "
          f">= {GOAL_B64:.0f}x at b64")
    for entry in summary:
        goal = {True: "meets goal", False: "MISSES GOAL"}.get(entry.get("meets_goal"), "(no goal)")
        b1 = f"{entry['speedup_b1']:.1f}x" if entry["speedup_b1"] else "–"
        b64 = f"{entry['speedup_b64']:.1f}x" if entry["speedup_b64"] else "–"
        print(f"{entry['model']:<15} {entry['baseline']:<13} {entry['chosen'] or '-':<17} {b1:>7} {b64:>7}  {goal}")
    out = ROOT / "benchmarks" / "results" / ("runtimes.json" if not args.threads else f"runtimes-{args.threads}t.json")
    out.parent.mkdir(exist_ok=True)
    from chiml.optimize.bench import available_cores

    out.write_text(json.dumps({
        "cpu_count": available_cores(), "threads": args.threads or available_cores(),
        "machine": platform.processor() or platform.machine(),
        "batches": list(BATCHES), "budget_s": args.budget, "wall_s": round(time.monotonic() - started, 1),
        "summary": summary, "reports": results,
    }, indent=2, default=str))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

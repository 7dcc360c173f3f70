"""Framework environments: which ML frameworks are installed, at which version, and what GPU they see.

The groups and their exact pins live in ``services/trainer/frameworks/<group>.txt`` (one file
per group: the trainer image is built with ``--build-arg FRAMEWORKS=<group>``). Measured on
Python 3.11, every group co-installs with the platform pins without changing one, so the local
profile installs them all into the platform's environment (``make frameworks``): ``chiml
train``, ``chiml tune``, the pyfunc endpoints and the JupyterLab kernel all run with that
interpreter, and a model of any framework loads where it is served.

:func:`inspect` imports the frameworks in a child interpreter: importing TensorFlow and JAX
takes seconds and grabs devices, which the CLI process should not do.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from chiml.errors import ChimlError

#: group -> the frameworks it provides (import names); torch and scikit-learn are in the base pins.
GROUPS: dict[str, tuple[str, ...]] = {
    "base": ("torch", "sklearn"),
    "classic": ("xgboost", "lightgbm", "catboost"),
    "torch": ("lightning", "transformers", "datasets", "accelerate"),
    "tensorflow": ("tensorflow", "keras"),
    "jax": ("jax", "flax", "optax"),
    "notebooks": ("jupyterlab", "nbclient", "ipykernel"),
}


#: import names that belong to a group but are not its GROUPS entry (older or alternative names).
_ALSO_IMPORTED: dict[str, str] = {"pytorch_lightning": "torch", "tf_keras": "tensorflow", "tf2onnx": "tensorflow",
                                  "onnxmltools": "classic", "jaxlib": "jax"}
#: the groups a training Job's image can hold (notebooks adds JupyterLab: not chosen for code)
CODE_GROUPS = ("classic", "torch", "tensorflow", "jax")


def groups_imported(sources: Iterable[str]) -> set[str]:
    """The framework groups whose modules the given Python sources import (``base`` frameworks
    and unparsable files count for nothing: the image's own import error says the rest)."""
    owner = {name: group for group in CODE_GROUPS for name in GROUPS[group]} | _ALSO_IMPORTED
    found: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found.update(owner[top] for top in (name.split(".", 1)[0] for name in names) if top in owner)
    return found


def requirements_dir() -> Path:
    """``services/trainer/frameworks`` of this checkout (the group files)."""
    return Path(__file__).resolve().parents[3] / "services" / "trainer" / "frameworks"


def group_pins(group: str) -> dict[str, str]:
    """The exact pins of a group's requirement file (``base`` has none: it is the platform)."""
    if group == "base":
        return {}
    path = requirements_dir() / f"{group}.txt"
    if not path.is_file():
        raise ChimlError(f"no requirement file for framework group {group!r}", hint=f"expected {path}")
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            pins[name.strip()] = pinned.strip()
    return pins


@dataclass(frozen=True)
class Framework:
    """One framework as the probing interpreter sees it."""

    group: str
    name: str
    installed: bool
    version: str | None = None
    gpu: bool | None = None  # None: the framework has no way to tell (or is not installed)
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


# Runs in the child interpreter: imports each framework, asks it for GPUs, prints JSON.
_PROBE = r"""
import json, sys, importlib
names = json.loads(sys.argv[1])
out = {}
def gpu_of(name, mod):
    if name == "torch":
        n = mod.cuda.device_count() if mod.cuda.is_available() else 0
        return n > 0, f"{n} CUDA device(s)"
    if name == "tensorflow":
        n = len(mod.config.list_physical_devices("GPU"))
        return n > 0, f"{n} GPU(s)"
    if name == "jax":
        kinds = sorted({d.platform for d in mod.devices()})
        return any(k in ("gpu", "cuda", "rocm") for k in kinds), "devices: " + ",".join(kinds)
    if name == "xgboost":
        cuda = bool(mod.build_info().get("USE_CUDA"))
        return (None, "CPU-only build") if not cuda else (None, "CUDA build")
    if name == "catboost":
        from catboost.utils import get_gpu_device_count
        n = get_gpu_device_count()
        return n > 0, f"{n} GPU(s)"
    return None, ""
for name in names:
    try:
        mod = importlib.import_module(name)
    except Exception as err:
        out[name] = {"installed": False, "detail": f"{type(err).__name__}: {err}"[:200]}
        continue
    entry = {"installed": True, "version": str(getattr(mod, "__version__", "")) or None}
    try:
        entry["gpu"], entry["detail"] = gpu_of(name, mod)
    except Exception as err:
        entry["gpu"], entry["detail"] = None, f"GPU check failed: {err}"[:200]
    out[name] = entry
print("CHIML-PROBE " + json.dumps(out))
"""


def inspect(python: str | None = None, groups: tuple[str, ...] | None = None, timeout: float = 600) -> list[Framework]:
    """Every framework of ``groups`` (default: all) as the interpreter ``python`` sees it."""
    chosen = groups or tuple(GROUPS)
    unknown = [g for g in chosen if g not in GROUPS]
    if unknown:
        raise ChimlError(f"unknown framework group(s): {', '.join(unknown)}", hint=f"groups: {', '.join(GROUPS)}")
    names = [name for group in chosen for name in GROUPS[group]]
    env_python = python or sys.executable
    try:
        done = subprocess.run(
            [env_python, "-c", _PROBE, json.dumps(names)],
            capture_output=True, text=True, timeout=timeout,
            env={"TF_CPP_MIN_LOG_LEVEL": "3", **_minimal_env()},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ChimlError(f"probing the frameworks took over {timeout:.0f} s") from None
    except OSError as err:
        raise ChimlError(f"cannot run {env_python}: {err.strerror}") from None
    line = next((x for x in done.stdout.splitlines() if x.startswith("CHIML-PROBE ")), None)
    if line is None:
        last = " ".join(done.stderr.strip().splitlines()[-1:])
        raise ChimlError(f"probing the frameworks failed: {last or f'exit {done.returncode}'}")
    found = json.loads(line.removeprefix("CHIML-PROBE "))
    return [
        Framework(group=group, name=name, **found[name])
        for group in chosen
        for name in GROUPS[group]
    ]


def _minimal_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

"""The isolated DeepSparse environment: ``CHIML_HOME/envs/deepsparse``.

DeepSparse is end-of-life: 1.8.0 is the last release that installs, it needs Python ≤ 3.11,
an x86 CPU with AVX2, numpy < 2 and onnx < 1.15, and its community licence allows evaluation,
not production. Those pins conflict with the platform's (numpy 2, onnx 1.23), so DeepSparse
lives in a venv of its own that chiml creates on first use; nothing from it is ever installed
into the platform's environment. The chiml_serving package (the runtime classes and the
benchmark worker) and the chiml_contract package it imports are copied into it, so the same
code serves and measures DeepSparse.
"""

from __future__ import annotations

import hashlib
import os
import platform as host
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from chiml.errors import ChimlError, NotSupportedError

# Exact pins, resolved together on Python 3.11 (kserve for serving; numpy/onnx/protobuf are
# the versions that satisfy both DeepSparse and kserve). Keep in step with
# services/serving/docker/deepsparse/requirements.txt (a test checks it).
PINS: tuple[str, ...] = (
    "deepsparse==1.8.0",
    "numpy==1.26.4",
    "onnx==1.14.1",
    "protobuf==6.33.6",
    "kserve==0.21.0",
)
LICENCE_NOTE = ("DeepSparse is end-of-life (1.8.0 is its last release) and its community licence allows "
                "evaluation only, not production use")
READY = ".chiml-ready"


def env_dir(home: Path) -> Path:
    return Path(home) / "envs" / "deepsparse"


def python_path(home: Path) -> Path:
    """The interpreter a DeepSparse endpoint or benchmark worker must run with."""
    return env_dir(home) / "bin" / "python"


def _fingerprint() -> str:
    """Changes when the pins or the copied package sources change (the env is then refreshed)."""
    digest = hashlib.sha256("\n".join(PINS).encode())
    for source in _copied_sources():
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _copied_sources() -> list[Path]:
    """The packages copied into the environment: the serving runtimes and the contract they import."""
    import chiml_contract
    import chiml_serving

    return [Path(chiml_serving.__file__).parent, Path(chiml_contract.__file__).parent]


def unsupported_reason() -> str | None:
    """Why DeepSparse cannot run on this host at all, or None."""
    if sys.version_info[:2] > (3, 11):
        return f"DeepSparse 1.8.0 needs Python ≤ 3.11 (this is {host.python_version()})"
    if host.machine().lower() not in ("x86_64", "amd64"):
        return f"DeepSparse needs an x86-64 CPU (this is {host.machine()})"
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        flags = ""
    if flags and " avx2" not in flags:
        return "DeepSparse needs a CPU with AVX2"
    return None


def is_ready(home: Path) -> bool:
    marker = env_dir(home) / READY
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == _fingerprint()


def _site_packages(directory: Path) -> Path:
    return directory / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def ensure(home: Path, step: Callable[[str], None] | None = None) -> Path:
    """Create (or refresh) the environment and return its interpreter; idempotent and locked.

    ``step`` receives a description of each stage (the CLI shows it as progress). Any failure
    removes the half-made environment, so the next call starts clean.
    """
    reason = unsupported_reason()
    if reason:
        raise NotSupportedError(reason)
    say = step or (lambda _message: None)
    directory = env_dir(home)
    directory.parent.mkdir(parents=True, exist_ok=True)
    log = directory.parent / "deepsparse-install.log"
    with FileLock(str(directory.parent / ".deepsparse.lock"), timeout=1800):
        if is_ready(home):
            return python_path(home)
        fresh = not (directory / "bin" / "python").exists()
        try:
            with log.open("w", encoding="utf-8") as out:
                def pip(*args: str) -> None:
                    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_CONSTRAINT")}
                    subprocess.run([str(python_path(home)), "-m", "pip", *args, "--disable-pip-version-check"],
                                   stdout=out, stderr=subprocess.STDOUT, check=True, env=env)

                if fresh:
                    say("creating the DeepSparse virtual environment")
                    # the base interpreter, not the platform venv's: nothing of ours leaks in
                    base = getattr(sys, "_base_executable", sys.executable)
                    subprocess.run([base, "-m", "venv", str(directory)], stdout=out, stderr=subprocess.STDOUT,
                                   check=True)
                say(f"installing {', '.join(PINS[:3])} (+ kserve) into {directory}")
                pip("install", "--quiet", *PINS)
            say("installing chiml's runtime classes into the environment")
            for source in _copied_sources():
                target = _site_packages(directory) / source.name
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            probe = "import deepsparse, numpy, chiml_serving.runtimes.worker; print(numpy.__version__)"
            check = subprocess.run([str(python_path(home)), "-c", probe], capture_output=True, text=True, timeout=300)
            if check.returncode != 0:
                last = " ".join(check.stderr.strip().splitlines()[-1:])
                raise ChimlError(f"the DeepSparse environment does not import: {last}")
            (directory / READY).write_text(_fingerprint(), encoding="utf-8")
        except subprocess.CalledProcessError:
            if fresh:
                shutil.rmtree(directory, ignore_errors=True)
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise ChimlError(f"creating the DeepSparse environment failed: {' '.join(tail) or 'pip failed'}",
                             hint=f"full log: {log}") from None
        except BaseException:
            if fresh:
                shutil.rmtree(directory, ignore_errors=True)
            raise
    return python_path(home)


def remove(home: Path) -> None:
    shutil.rmtree(env_dir(home), ignore_errors=True)

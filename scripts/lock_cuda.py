"""`make lock-cuda`: resolve the CUDA builds of the trainer image's framework groups against PyPI.

The CUDA variants of the trainer image (services/images.yaml, `trainer:<version>[-<group>]-cuda`)
take torch from PyPI (its Linux x86_64 wheel is the CUDA build), `tensorflow[and-cuda]`,
`jax[cuda13]` and `xgboost` (instead of `xgboost-cpu`). Nothing is installed: pip resolves with
`--dry-run --report` for Linux x86_64 / CPython 3.11, only wheels, every platform pin
(requirements/constraints.txt) and every CPU group pin as constraints, ignoring this machine's
pip configuration (its local wheel folders hold the CPU torch). It writes:

* services/trainer/frameworks/cuda/base.txt: what the CUDA torch adds to the trainer's base
  (NVIDIA's libraries, triton); a constraint file of every trainer build;
* services/trainer/frameworks/cuda/<group>.txt: the group's full pin list for a CUDA build,
  replacing <group>.txt there.

It also resolves every CUDA group together (the CUDA notebooks variant) and prints each
resolution's download size. Review the diff before committing it.

Usage: lock_cuda.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
TRAINER = ROOT / "services" / "trainer" / "requirements.txt"
GROUPS_DIR = ROOT / "services" / "trainer" / "frameworks"
CUDA_DIR = GROUPS_DIR / "cuda"
INDEX = "https://pypi.org/simple"
# the Python of the images' base (services/images.yaml: python:<version>-slim-bookworm)
PYTHON = re.search(r"python:(\d+\.\d+\.\d+)", (ROOT / "services" / "images.yaml").read_text())[1]  # type: ignore[index]
ARCH = "x86_64"
# A CUDA build of a group: which CPU distribution it replaces, with what (same version).
REPLACE = {
    "classic": {"xgboost-cpu": "xgboost"},
    "tensorflow": {"tensorflow-cpu": "tensorflow[and-cuda]"},
    "jax": {"jax": "jax[cuda13]"},  # CUDA 13, as PyPI's torch: both share NVIDIA's cu13 libraries
}
# build tools: the image removes them (services/trainer/Dockerfile), `make lock` does not pin them
TOOLS = ("pip", "setuptools", "wheel")
HEADER = {
    "base": "what PyPI's CUDA build of torch adds to the trainer's base (services/trainer/requirements.txt)",
    "classic": "XGBoost with CUDA (`xgboost`, not `xgboost-cpu`), LightGBM, CatBoost",
    "tensorflow": "TensorFlow with its CUDA 12 libraries (`tensorflow[and-cuda]`), Keras 3",
    "jax": "JAX with its CUDA 13 plugin (`jax[cuda13]`), Flax, optax",
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, tuple[str, str]]:
    """norm(name) -> (name as written, version)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[norm(name.split("[")[0])] = (name.strip(), version.strip())
    return pins


def resolve(requirements: list[str], constraints: list[Path]) -> dict[str, dict]:
    """pip's resolution for Linux x86_64 / CPython 3.11 wheels: norm(name) -> report entry."""
    print(f"resolving {' '.join(r for r in requirements if r != '-r')[:150]} ...", flush=True)
    platforms = [f"manylinux_2_{minor}_{ARCH}" for minor in range(28, 16, -1)]
    platforms += [f"manylinux2014_{ARCH}", f"linux_{ARCH}"]
    with tempfile.TemporaryDirectory(prefix="chiml-lock-cuda-") as tmp:
        report = Path(tmp, "report.json")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                   "--report", str(report), "--index-url", INDEX, "--only-binary=:all:",
                   "--python-version", PYTHON, "--implementation", "cp", "--abi", "cp311"]
        for platform in platforms:
            command += ["--platform", platform]
        for path in constraints:
            command += ["-c", str(path)]
        command += requirements
        # this machine's pip configuration points at local wheel folders: PyPI only
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise SystemExit(f"pip could not resolve {requirements}:\n{done.stderr.strip()[-2000:]}")
        installed = json.loads(report.read_text())["install"]
    return {norm(item["metadata"]["name"]): item for item in installed}


def wheel_size(item: dict) -> int:
    """The wheel's size from PyPI's JSON simple API (the report does not carry it)."""
    url = item["download_info"]["url"]
    filename = url.rsplit("/", 1)[-1]
    request = urllib.request.Request(f"{INDEX}/{norm(item['metadata']['name'])}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    return next((f.get("size") or 0 for f in files if f["filename"] == filename), 0)


def render(group: str, pins: dict[str, tuple[str, str]], note: str) -> str:
    lines = [
        f"# CUDA build of framework group {group!r}: {HEADER[group]}.",
        "# Generated by scripts/lock_cuda.py (`make lock-cuda`): resolved against PyPI for Linux x86_64 /",
        "# CPython 3.11 with every pin of requirements/constraints.txt and of the CPU groups as constraints.",
        f"# {note}",
    ]
    body = sorted(f"{name}=={version}" for name, version in pins.values())
    return "\n".join(lines + body) + "\n"


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    platform_pins = read_pins(CONSTRAINTS)
    cpu_groups = {path.stem: path for path in sorted(GROUPS_DIR.glob("*.txt"))}
    files: dict[str, str] = {}
    sizes: dict[str, int] = {}

    # the base: the trainer's requirements with PyPI's torch (the CUDA build)
    base = resolve(["-r", str(TRAINER)], [CONSTRAINTS])
    if not any(key.startswith("nvidia-") for key in base):
        raise SystemExit("PyPI's torch resolved without NVIDIA libraries: not the CUDA build?")
    base_pins = {k: (v["metadata"]["name"], v["metadata"]["version"]) for k, v in base.items()
                 if k not in platform_pins and k not in TOOLS}
    files["base"] = render("base", base_pins,
                           "A constraint file of every trainer build (harmless for CPU torch, which needs none of it).")
    sizes["base"] = sum(wheel_size(item) for item in base.values())
    base_file = Path(tempfile.mkstemp(prefix="chiml-cuda-base-", suffix=".txt")[1])
    base_file.write_text(files["base"])

    try:
        for group, replace in REPLACE.items():
            cpu = read_pins(cpu_groups[group])
            wanted = []
            for key, (name, version) in cpu.items():
                substitute = replace.get(key)
                wanted.append(f"{substitute or name}=={version}")
            # the other CPU groups' pins stay constraints: one version of each package everywhere
            others = [p for g, p in cpu_groups.items() if g != group]
            resolved = resolve([*wanted, "-r", str(TRAINER)], [CONSTRAINTS, base_file, *others])
            pins = {key: (item["metadata"]["name"], item["metadata"]["version"]) for key, item in resolved.items()
                    if key not in platform_pins and key not in base_pins and key not in TOOLS}
            for key, substitute in replace.items():  # with its extra: what the image installs
                pins[norm(substitute.split("[")[0])] = (substitute, cpu[key][1])
            files[group] = render(group, pins, f"Replaces ../{group}.txt in a CUDA build of the trainer image.")
            sizes[group] = sum(wheel_size(item) for key, item in resolved.items() if key not in base)
        # every CUDA group at once, with the notebooks group: the CUDA notebooks variant
        everything = ["-r", str(TRAINER), "-r", str(cpu_groups["torch"]), "-r", str(cpu_groups["notebooks"])]
        for group, replace in REPLACE.items():
            for key, (name, version) in read_pins(cpu_groups[group]).items():
                everything.append(f"{replace.get(key, name)}=={version}")
        together = resolve(everything, [CONSTRAINTS, base_file])
        sizes["all groups"] = sum(wheel_size(item) for item in together.values())
    finally:
        base_file.unlink()

    CUDA_DIR.mkdir(parents=True, exist_ok=True)
    for group, text in files.items():
        (CUDA_DIR / f"{group}.txt").write_text(text)
        print(f"wrote {(CUDA_DIR / f'{group}.txt').relative_to(ROOT)}")
    for name, size in sizes.items():
        print(f"{name}: {size / 1e6:.0f} MB of wheels")
    print("every CUDA group co-installs with the others and the notebooks group")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Install every image's pinned requirements into a throwaway venv (no Docker engine here).

A quick check without a container engine: each image's requirements resolve and install
together on this Python (`make images` and `make images-test` build and run the real images).
Usage: check_image_requirements.py [NAME...]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Images whose requirements cannot install on these machines, and why.
SKIP = {
    "services/serving/docker/tensorrt": "TensorRT wheels come only from NVIDIA's package index",
}


def images() -> list[Path]:
    # every image's requirements file (the serving runtimes' are under services/serving/docker/<runtime>/,
    # built as targets of services/serving/Dockerfile)
    return sorted(p.parent for p in ROOT.glob("services/**/requirements.txt"))


def check(image: Path) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="chiml-image-") as tmp:
        venv.create(tmp, with_pip=True)
        result = subprocess.run(
            [
                f"{tmp}/bin/python",
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(image / "requirements.txt"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            return False, (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        conflicts = subprocess.run(
            [f"{tmp}/bin/python", "-m", "pip", "check"], capture_output=True, text=True, check=False
        )
        if conflicts.returncode != 0:
            return False, conflicts.stdout.strip().splitlines()[0]
    return True, "installs"


def main() -> int:
    wanted = set(sys.argv[1:])
    failed = 0
    for image in images():
        rel = str(image.relative_to(ROOT))
        if wanted and image.name not in wanted and rel not in wanted:
            continue
        if rel in SKIP:
            print(f"SKIP {rel}: {SKIP[rel]}")
            continue
        started = time.monotonic()
        ok, detail = check(image)
        print(f"{'ok  ' if ok else 'FAIL'} {rel}: {detail} ({time.monotonic() - started:.0f}s)", flush=True)
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

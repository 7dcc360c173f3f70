"""`make lock`: resolve pyproject's ranges afresh in a throwaway venv and freeze them.

torch is installed first at its exact version: left to the resolver it would pull a CUDA build.
The result replaces requirements/constraints.txt; review the diff before committing it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "requirements" / "constraints.txt"
SKIP = ("pip==", "setuptools==", "wheel==", "chiml==", "chiml-serving==", "chiml-contract==", "-e ")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="chiml-lock-") as tmp:
        venv.create(tmp, with_pip=True)
        py = str(Path(tmp) / "bin" / "python")
        subprocess.run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "-e", f"{ROOT}/contract", "-e", f"{ROOT}/services/serving",
                        "-e", f"{ROOT}[all]"], check=True)
        frozen = subprocess.run([py, "-m", "pip", "freeze", "--all"], check=True, capture_output=True, text=True).stdout
    lines = []
    for line in frozen.splitlines():
        if line.startswith(SKIP) or " @ " in line:
            continue
        lines.append("torch==2.13.0" if line.startswith("torch==2.13.0+") else line)
    header = [
        "# Exact pins for every Python dependency of the platform environment (.venv).",
        "# Regenerate with: make lock   (resolves pyproject's ranges on Python 3.11 and freezes them)",
    ]
    OUT.write_text("\n".join(header + sorted(lines, key=str.lower)) + "\n")
    print(f"wrote {len(lines)} pins to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

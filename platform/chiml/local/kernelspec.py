"""The ``chiml`` Jupyter kernel: one per framework environment, the same on every profile.

The local profile writes it under its home (:mod:`chiml.local.jupyterlab`); the trainer image's
notebooks variants, which JupyterLab runs on the cluster profiles (helm/charts/jupyterlab),
install it into the image's environment at build time::

    python -m chiml.local.kernelspec /opt/venv     # -> /opt/venv/share/jupyter/kernels/chiml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KERNEL_NAME = "chiml"
DISPLAY_NAME = "Python 3 (chiml: all frameworks)"


def kernelspec(python: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """The kernel.json of the ``chiml`` kernel running ``python``."""
    return {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "env": {"TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        "metadata": {"debugger": True},
    }


def write(kernels_dir: Path, python: str, env: dict[str, str] | None = None) -> Path:
    """Write ``<kernels_dir>/chiml/kernel.json``; returns its path."""
    path = kernels_dir / KERNEL_NAME / "kernel.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kernelspec(python, env), indent=1), encoding="utf-8")
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m chiml.local.kernelspec PREFIX   (an environment with ipykernel)", file=sys.stderr)
        return 2
    print(write(Path(argv[0]) / "share" / "jupyter" / "kernels", sys.executable))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

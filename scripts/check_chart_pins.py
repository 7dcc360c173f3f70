"""`make kube-pins`: check that every chart pin in helm/releases.yaml is a published release.

Usage: python scripts/check_chart_pins.py [HELM_DIR]   (default: the checkout's helm/)
"""

from __future__ import annotations

import sys
from pathlib import Path

from chiml.errors import ChimlError
from chiml.kube.helm import Helm
from chiml.kube.pins import require_published
from chiml.kube.releases import load_releases

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    helm_dir = Path(argv[0]) if argv else ROOT / "helm"
    try:
        count = require_published(load_releases(helm_dir), Helm(), progress=print)
    except ChimlError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return 1
    print(f"all {count} upstream chart pins are published")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

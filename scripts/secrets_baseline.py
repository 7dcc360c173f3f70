"""`make secrets-baseline`: rescan the tracked files into .secrets.baseline, keeping audit labels.

New findings come out unaudited (no ``is_secret``) and are listed, which fails
tests/reliability/test_exposure.py until someone looks at each one. A real secret must be removed
from the repository, not labelled; once every listed line has been read and found harmless (a
Secret's name, a checksum, a test fixture), `--accept` labels them as false positives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / ".secrets.baseline"


def scan() -> dict:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    files = [f for f in files if f != BASELINE.name and (ROOT / f).is_file()]
    tool = Path(sys.executable).with_name("detect-secrets")
    out = subprocess.run([str(tool), "scan", *files], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> int:
    fresh = scan()
    old = json.loads(BASELINE.read_text()) if BASELINE.exists() else {"results": {}}
    labels = {
        (name, item["hashed_secret"]): item["is_secret"]
        for name, items in old["results"].items()
        for item in items
        if "is_secret" in item
    }
    accept = "--accept" in sys.argv[1:]
    unaudited = 0
    for name, items in fresh["results"].items():
        for item in items:
            label = labels.get((name, item["hashed_secret"]))
            if label is None and accept:
                label = False
            if label is None:
                unaudited += 1
                print(f"to audit: {name}:{item['line_number']} ({item['type']})")
            else:
                item["is_secret"] = label
    fresh.pop("generated_at", None)
    BASELINE.write_text(json.dumps(fresh, indent=2, sort_keys=True) + "\n")
    print(f"{BASELINE.name}: {sum(map(len, fresh['results'].values()))} findings, {unaudited} to audit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

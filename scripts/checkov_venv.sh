#!/usr/bin/env bash
# Create (once) the isolated virtual environment that runs checkov.
#
# checkov pins its own python-hcl2 (and a long tail of other packages) that would clobber the
# versions in the main .venv, so it lives in its own venv. Idempotent: a venv whose checkov
# already reports the pinned version is reused. Prints the checkov executable's path.
set -euo pipefail

CHECKOV_VERSION="3.3.30"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"
PYTHON="${PYTHON:-python3.11}"

if [[ -x "$VENV/bin/checkov" ]] && [[ "$("$VENV/bin/checkov" --version 2>/dev/null)" == "$CHECKOV_VERSION" ]]; then
  echo "$VENV/bin/checkov"
  exit 0
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2
echo "$VENV/bin/checkov"

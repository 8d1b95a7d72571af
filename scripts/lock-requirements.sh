#!/usr/bin/env bash
# Re-pins requirements.txt from requirements.in: resolves the top-level packages in a scratch
# venv made from Debian's python3 (as install-deps.sh makes .venv) and writes its full freeze.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
/usr/bin/python3 -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.in
{
  echo "# Every package of the project venv (.venv/), pinned: made from requirements.in by"
  echo "# scripts/lock-requirements.sh. scripts/install-deps.sh installs exactly this set."
  "$scratch/venv/bin/python" -m pip freeze --disable-pip-version-check
} > requirements.txt
echo "lock-requirements: $(grep -vc '^#' requirements.txt) packages pinned in requirements.txt"

#!/usr/bin/env bash
# Re-resolve requirements.lock, keeping every version it holds: after a change to pyproject.toml's ranges, or
# with a package's lines deleted from the lock first, to move that one package to the newest version allowed.
# The lock's versions are what the README's numbers were measured with; change them only with new measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=$(mktemp)
trap 'rm -f "$keep"' EXIT
grep -v '^\s*#' requirements.lock > "$keep"
.venv/bin/uv pip compile pyproject.toml --universal --no-python-downloads --extra mxnet --extra test --python-version 3.10 \
  --constraint "$keep" --no-header --no-annotate --quiet --output-file requirements.lock.new
{ echo "# The exact versions behind the README's numbers, for Python 3.10 to 3.13: scripts/setup.sh, CI and"
  echo "# environment.yml install these. Made by scripts/lock.sh (uv pip compile --universal) from pyproject.toml's"
  echo "# ranges and [tool.uv] overrides; the NumPy, matplotlib, pandas and scipy of each Python were chosen by hand,"
  echo "# and contourpy 1.3.2 below 3.12: uv's NumPy override would let a contourpy that needs NumPy 1.25 past."
  cat requirements.lock.new; } > requirements.lock
rm requirements.lock.new

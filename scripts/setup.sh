#!/usr/bin/env bash
# Set up everything gluon-bn needs, idempotently: a Python 3.11 virtual environment in .venv
# with the pinned packages, and real Fashion-MNIST from the Debian/Ubuntu package.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
DATA_DIR=/usr/share/datasets/fashion-mnist

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "setup: gluon-bn needs Python 3.11 (mxnet 1.9.1 and numpy 1.23.5 have no wheels for newer" \
       "Pythons); install python3.11 or set PYTHON=/path/to/python3.11, or use environment.yml with conda" >&2
  return 1
}

# 1. Python packages, reinstalled only when pyproject.toml changed.
stamp="$VENV/.gluon-bn-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    python=$(find_python)
    echo "setup: creating $VENV with $python"
    "$python" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e '.[test]'
  # Optional: PyTorch's CPU build, for the PyTorch row of `gluon-bn bench` and its test. Only a
  # CPU wheel at hand (PyTorch's CPU index or a local wheel folder) is taken, never a CUDA build.
  if ! "$VENV/bin/python" -m pip install --quiet --only-binary :all: 'torch==2.13.0+cpu' >/dev/null 2>&1; then
    echo "setup: no PyTorch CPU wheel at hand; gluon-bn bench will leave out its PyTorch row" >&2
  fi
  echo "$want" > "$stamp"
fi

# 2. Real Fashion-MNIST from the Debian/Ubuntu package, when it is not there yet.
if [ ! -f "$DATA_DIR/train-images-idx3-ubyte.gz" ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null 2>&1; then sudo=sudo; else sudo=none; fi
  if [ "$sudo" != none ]; then
    echo "setup: installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
  fi
fi
if [ ! -f "$DATA_DIR/train-images-idx3-ubyte.gz" ]; then
  echo "setup: Fashion-MNIST is not in $DATA_DIR; gluon-bn will look in \$GLUON_BN_DATA and" \
       "~/.mxnet/datasets/fashion-mnist, then download it on first use" >&2
fi
echo "setup: ready ($("$VENV/bin/python" --version), $("$VENV/bin/gluon-bn" --version 2>/dev/null || echo gluon-bn))"

#!/usr/bin/env bash
# Set up everything gluon-bn needs, idempotently: a virtual environment in .venv (Python 3.10 to 3.13)
# with exactly the versions of requirements.lock, and real Fashion-MNIST from the Debian/Ubuntu package.
#   PYTHON=python3.12 ./scripts/setup.sh     # that Python, or stop; without PYTHON: the first supported one found
#   VENV=.venv-3.12 ./scripts/setup.sh       # another folder for the environment
#   NEWEST=1 ./scripts/setup.sh              # the newest versions pyproject.toml's ranges allow, not the lock
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
DATA_DIR=/usr/share/datasets/fashion-mnist
PREFERRED="3.11 3.12 3.13 3.10"  # supported, in the order tried when PYTHON is not set
UV_VERSION=0.13.9                # installs requirements.lock exactly (uv pip sync)

version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
supported() { case " $PREFERRED " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# A command that runs, or for python3.X that does not (a pyenv shim runs only the versions pyenv
# enables), that version's own binary from pyenv's versions folder.
resolve() {
  local found
  if version_of "$1" >/dev/null; then echo "$1"; return 0; fi
  case "$1" in python3.*) ;; *) return 1 ;; esac
  for found in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"${1#python}".*/bin/"$1"; do
    if version_of "$found" >/dev/null; then echo "$found"; return 0; fi
  done
  return 1
}

find_python() {
  local candidate found version
  if [ -n "${PYTHON:-}" ]; then
    if ! found=$(resolve "$PYTHON"); then
      echo "setup: PYTHON=$PYTHON does not run; point it at a Python 3.10 to 3.13" >&2; return 1
    fi
    version=$(version_of "$found")
    if ! supported "$version"; then
      echo "setup: PYTHON=$PYTHON is Python $version; gluon-bn runs on 3.10 to 3.13 (MXNet 1.9.1, the" \
           "last release, has no wheels for others, and 3.14 is untested); install Python 3.13 (e.g." \
           "uv python install 3.13, or pyenv install 3.13) and run PYTHON=python3.13 $0" >&2; return 1
    fi
    echo "$found"; return 0
  fi
  for candidate in $(for v in $PREFERRED; do echo "python$v"; done) python3; do
    found=$(resolve "$candidate") || continue
    if supported "$(version_of "$found")"; then echo "$found"; return 0; fi
  done
  echo "setup: gluon-bn needs Python 3.10 to 3.13; install one, or set PYTHON=/path/to/python3.X" >&2
  return 1
}

# 1. Python packages, reinstalled only when the lock, pyproject.toml, the import hook or the Python changed.
python=$(find_python)
want_version=$(version_of "$python")
if [ -x "$VENV/bin/python" ]; then
  have_version=$(version_of "$VENV/bin/python" || echo none)
  if [ -n "${PYTHON:-}" ] && [ "$have_version" != "$want_version" ]; then
    echo "setup: $VENV holds Python $have_version, not $want_version from PYTHON=$PYTHON; remove $VENV," \
         "or give another folder with VENV=.venv-$want_version" >&2
    exit 1
  fi
else
  echo "setup: creating $VENV with $python (Python $want_version)"
  "$python" -m venv "$VENV"
fi
stamp="$VENV/.gluon-bn-installed"
want="$(cat pyproject.toml requirements.lock gluon_bn/runtime/mxnet_hook.py gluon_bn/runtime/*.pth | sha256sum | cut -d' ' -f1)"
want="$want $(version_of "$VENV/bin/python") newest=${NEWEST:-0}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip "uv==$UV_VERSION"
  if [ "${NEWEST:-0}" = 1 ]; then
    "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --upgrade --resolution highest -e '.[mxnet,test]'
  else
    "$VENV/bin/uv" pip sync --quiet --python "$VENV/bin/python" requirements.lock
    "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps -e .
  fi
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
numpy=$("$VENV/bin/python" -c 'import numpy; print(numpy.__version__)')
echo "setup: ready in $VENV ($("$VENV/bin/python" --version), NumPy $numpy, $("$VENV/bin/gluon-bn" --version 2>/dev/null || echo gluon-bn))"

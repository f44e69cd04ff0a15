"""What the start-up hook costs a Python that never imports MXNet: ``python -c pass``, hook on against hook off.

Runs the two in turn (on, off, on, off, ...) so that drift hits both alike, and prints each one's median, the
difference and the ratio, all from this one run; ``-X importtime`` then shows the hook's own import.

    .venv/bin/python benchmarks/start_up.py [--runs 200]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import _gluon_bn_mxnet_hook as hook


def _once(env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - start


def _hook_import_us(env: dict) -> int:
    """Microseconds ``-X importtime`` gives the hook module's own import (0 if it was not imported)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"], env=env, capture_output=True, text=True, check=True
    )
    found = re.search(r"import time:\s+(\d+) \|\s+(\d+) \|\s+_gluon_bn_mxnet_hook$", done.stderr, re.M)
    return int(found.group(2)) if found else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    # Bytecode cached, as pip leaves it after an install and as Python writes it on a first import.
    on = {k: v for k, v in os.environ.items() if k not in (hook.DISABLE, "PYTHONDONTWRITEBYTECODE")}
    off = {**on, hook.DISABLE: "1"}
    _once(on)
    times = {"on": [], "off": []}
    for _ in range(runs):
        times["on"].append(_once(on))
        times["off"].append(_once(off))
    median = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    print(
        f"python -c pass, {runs} runs each, interleaved: hook on {median['on']:.2f} ms, hook off "
        f"{median['off']:.2f} ms (medians); difference {median['on'] - median['off']:+.2f} ms, ratio "
        f"{median['on'] / median['off']:.3f}"
    )
    print(
        f"-X importtime: _gluon_bn_mxnet_hook {_hook_import_us(on)} us cumulative with the hook on, "
        f"{_hook_import_us(off)} us with it off"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

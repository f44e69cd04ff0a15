"""Whether two gluon-bn records hold the same numbers to the last digit: every model's history (wall
times aside) and first BN layer. Used to hold every Python and NumPy to the default one's numbers.

    python scripts/same_numbers.py reference/reproduce.json other/reproduce.json
"""

import json
import sys


def numbers(path: str) -> dict:
    """Each model's per-epoch history without the wall times, and its first BN layer's gamma and beta."""
    with open(path) as f:
        results = json.load(f)["results"]
    return {
        model: {
            "history": [{k: v for k, v in epoch.items() if k != "time"} for epoch in run["history"]],
            "first_bn": run.get("first_bn"),
        }
        for model, run in results.items()
    }


def main(reference: str, other: str) -> int:
    want, got = numbers(reference), numbers(other)
    if want == got:
        print(f"same numbers: {', '.join(want)} ({sum(len(r['history']) for r in want.values())} epochs) in {other}")
        return 0
    for model in sorted(set(want) | set(got)):
        if want.get(model) != got.get(model):
            print(
                f"DIFFERENT: {model}: {reference} has {want.get(model)}, {other} has {got.get(model)}", file=sys.stderr
            )
    return 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))

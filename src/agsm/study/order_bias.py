"""Does a model read the relation word, or place the first-named object left or on top whatever the word says?

    python -m agsm.study.order_bias runs/study/sd15/base/eval-test.json runs/study-restated/sd15/base/eval-test.json

Splits the position verdicts of `eval-*.json` files (agsm.study.arms, agsm eval shapes) by what the relation asks
of the first-named object: "to the left of" and "above" put it left or on top, "to the right of" and "below" put
it right or at the bottom. A model that reads the relation is right about equally often in both halves; a model
that always draws the first-named object left or on top is right in the first half and at chance (about 0.25
for two objects placed at random, one of four relations) in the second.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..shapes.grammar import parse_prompt

FIRST_LEFT_OR_TOP = frozenset({"left_of", "above"})


def order_bias(verdicts: list[dict]) -> dict[str, dict]:
    """{"first left/top" | "first right/bottom": {"correct", "n", "rate"}} over the position verdicts."""
    halves: dict[str, dict] = {}
    for verdict in verdicts:
        if verdict["category"] != "position":
            continue
        relation = parse_prompt(verdict["prompt"]).relation
        half = "first left/top" if relation in FIRST_LEFT_OR_TOP else "first right/bottom"
        counts = halves.setdefault(half, {"correct": 0, "n": 0})
        counts["correct"] += int(verdict["correct"])
        counts["n"] += 1
    for counts in halves.values():
        counts["rate"] = counts["correct"] / counts["n"]
    return halves


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="eval-*.json or results.json files with per-image verdicts")
    args = parser.parse_args(argv)
    for path in args.results:
        halves = order_bias(json.loads(Path(path).read_text())["verdicts"])
        cells = ", ".join(f"{half} {c['correct']}/{c['n']} = {c['rate']:.2f}" for half, c in sorted(halves.items()))
        print(f"{path}: {cells}")


if __name__ == "__main__":
    main()

"""Regenerate the shipped evaluation suite (seeded, byte-identical on every run).

    python scripts/make_eval_suite.py [--seed 0] [--per-category 50] [--out src/agsm/shapes/data/eval_suite.jsonl]
"""

import argparse
from collections import Counter

from agsm.shapes.suite import PER_CATEGORY, SUITE_SEED, build_eval_suite, default_suite_path, write_eval_suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=SUITE_SEED)
    parser.add_argument("--per-category", type=int, default=PER_CATEGORY)
    parser.add_argument("--out", default=str(default_suite_path()))
    args = parser.parse_args()
    path = write_eval_suite(args.out, args.seed, args.per_category)
    counts = Counter(line["category"] for line in build_eval_suite(args.seed, args.per_category))
    print(f"wrote {path}: {dict(counts)}")


if __name__ == "__main__":
    main()

"""Print the judge's measured agreement on degraded renders (the figures in src/agsm/shapes/README.md).

    python scripts/measure_judge.py [--n 3000] [--seed 0]
"""

import argparse
import json
import time

from agsm.shapes.robustness import measure_judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.time()
    result = measure_judge(args.n, args.seed)
    result["seconds"] = round(time.time() - t0, 1)
    failures = result.pop("failures")
    print(json.dumps(result, indent=2))
    for line in failures[:20]:
        print(" ", line)


if __name__ == "__main__":
    main()

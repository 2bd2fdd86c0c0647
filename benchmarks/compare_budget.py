#!/usr/bin/env python
"""How well `actlab compare` keeps to its time budget: the plan's forecast against the clock.

For each budget, a fresh `run_compare` on the bundled corpus (so nothing is reused) sizes a
model and a step count from its calibration steps, then trains every activation for every
seed. Prints, per budget and repeat: the tier and step count chosen, the share of the budget
the whole comparison used (wall / budget; the plan aims at SAFETY of what calibration leaves),
and each round's measured time over the plan's forecast (1.0 = the forecast was exact; below
1 the plan was too cautious and left budget unused, above 1 it risked overrunning).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import device_name  # noqa: E402

import torch  # noqa: E402

from actlab.lab import compare as cmp  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--budgets", default="20,40,100",
                   help="comma-separated budgets in seconds (100 s for 3 x 2 runs is the small tier)")
    p.add_argument("--acts", default="gelu,sigmoid,swiglu", help="activations to compare")
    p.add_argument("--seeds", type=int, default=2, help="seeds per activation")
    p.add_argument("--repeats", type=int, default=2, help="fresh comparisons per budget")
    p.add_argument("--workers", type=int, default=1, help="runs side by side")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    acts = args.acts.split(",")
    print(f"{device_name(torch.device('cpu'))}; {len(acts)} activations x {args.seeds} seeds, "
          f"{args.workers} worker(s); plan aims at {cmp.SAFETY:.0%} of the budget left after "
          "calibration")
    print(f"{'budget':>7} {'tier':>6} {'steps':>6} {'wall/budget':>12}  measured/forecast per round")
    ratios, shares = [], []
    for budget in (float(b) for b in args.budgets.split(",")):
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                r = cmp.run_compare(None, acts, budget, args.seeds, tmp, progress=False,
                                    workers=args.workers)
            planned = r["timing"]["round_s_planned"]
            per_round = [t / planned for t in r["timing"]["rounds_s"]]
            ratios += per_round
            shares.append(r["wall_s"] / budget)
            print(f"{budget:>6.0f}s {r['config']['tier']:>6} {r['steps']:>6} "
                  f"{shares[-1]:>12.3f}  " + " ".join(f"{x:.3f}" for x in per_round))
    print(f"median wall/budget {statistics.median(shares):.3f} (min {min(shares):.3f}, "
          f"max {max(shares):.3f}); median measured/forecast round {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()

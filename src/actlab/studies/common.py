"""What several studies share: the held-out tuning seed, the learning-rate choice from tuning
runs, and the bundled corpus tokenized by characters for their GPTs."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence

from actlab.analysis.numbers import finite_or_inf

# The seed of every tuning run. Never an evaluation seed, so the luck of the rate selection
# stays out of the paired tests on the evaluation seeds.
TUNE_SEED = 1000


def pick_lrs(tuned: list[dict], group: Callable[[dict], Hashable],
             grids: Mapping[Hashable, Sequence[float]] | None = None,
             loss_key: str = "final_loss") -> dict[Hashable, dict]:
    """For each group of tuning runs, the learning rate with the lowest final loss.

    `group(params)` says which group a stored run belongs to (an activation, a variant, a
    setting and activation). `grids` gives each group's rates, so a group of a one-point grid
    needs no runs and runs at other rates are ignored; without it a group's rates are those its
    runs have. A run whose `loss_key` is missing or not finite (diverged, failed) counts as
    +inf, and so does a rate with no run; ties go to the smaller rate.

    Returns {group: {"lr": chosen, "at_edge": chosen is the smallest or largest of several
    rates, "lrs": the rates in increasing order, "val_loss": the loss at each}}.
    """
    losses: dict[Hashable, dict[float, float]] = {}
    for r in tuned:
        losses.setdefault(group(r["params"]), {})[r["params"]["lr"]] = finite_or_inf(r.get(loss_key))
    chosen = {}
    for g in (grids if grids is not None else losses):
        seen = losses.get(g, {})
        lrs = sorted(grids[g] if grids is not None else seen)
        val = [seen.get(lr, math.inf) for lr in lrs]
        best = min(zip(lrs, val), key=lambda p: (p[1], p[0]))[0]
        chosen[g] = {"lr": best, "at_edge": len(lrs) > 1 and best in (lrs[0], lrs[-1]),
                     "lrs": lrs, "val_loss": val}
    return chosen


# Two entries: the runs of one study use one or two block sizes.
@functools.lru_cache(maxsize=2)
def gpt_data(block_size: int):
    """The bundled corpus, character-tokenized, prepared once per process and block size."""
    from actlab.data import prepare

    return prepare(None, "char", block_size)

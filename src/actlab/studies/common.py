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


# Learning rates a grid may grow to when its best rate sits on an edge (extend_grid): beyond
# these, Adam-trained small GPTs here either barely move or diverge within the first steps.
LR_BOUNDS = (1e-4, 0.3)
MAX_EXTENSIONS = 3  # further grid steps per group: a bound on the extra tuning cost


def extend_grid(chosen: Mapping[Hashable, dict], factor: float | None = None,
                bounds: tuple[float, float] = LR_BOUNDS) -> dict[Hashable, float]:
    """For each group whose best rate is on its grid's edge (pick_lrs' "at_edge"), the next rate
    beyond that edge, one grid step further (`factor`, else the ratio of the two rates at that
    edge), as long as it stays within `bounds`. Groups with an interior best, or at a bound,
    get nothing."""
    out = {}
    for g, c in chosen.items():
        lrs = c["lrs"]
        if not c["at_edge"] or len(lrs) < 2:
            continue
        low = c["lr"] == lrs[0]
        step = factor or (lrs[1] / lrs[0] if low else lrs[-1] / lrs[-2])
        nxt = c["lr"] / step if low else c["lr"] * step
        if bounds[0] * (1 - 1e-9) <= nxt <= bounds[1] * (1 + 1e-9):
            out[g] = float(f"{nxt:.3g}")  # 1e-2 * 3 -> 0.03, not 0.030000000000000002
    return out


def grow_grids(grids: Mapping[Hashable, Sequence[float]],
               run_and_pick: Callable[[dict], dict]) -> dict[Hashable, dict]:
    """Tune on `grids` ({group: rates}) with `run_and_pick(grids)`, which runs what is missing
    (stored runs are reused) and returns pick_lrs' choice; while a group's best rate is on its
    grid's edge, grow that grid one step (extend_grid), at most MAX_EXTENSIONS times. Returns
    the last choice."""
    grids = {g: list(v) for g, v in grids.items()}
    for _ in range(MAX_EXTENSIONS + 1):
        chosen = run_and_pick(grids)
        grow = extend_grid(chosen)
        if not grow:
            break
        for g, lr in grow.items():
            grids[g].append(lr)
    return chosen


# Four entries: the runs of one study use one or two block sizes, on one corpus.
@functools.lru_cache(maxsize=4)
def gpt_data(block_size: int, data: str | None = None, tokenizer: str = "char"):
    """A corpus (None: the bundled one) under a tokenizer, prepared once per process and block
    size."""
    from actlab.data import prepare

    return prepare(data, tokenizer, block_size)


def job_data(params: Mapping) -> tuple[str | None, str]:
    """The corpus and tokenizer a job names (corpus_keys), the bundled corpus by characters when
    it names none."""
    return params.get("data"), params.get("tokenizer", "char")


def corpus_keys(data: str | None = None, tokenizer: str = "char") -> dict:
    """The job keys that name the corpus a study trains on: its absolute path, its tokenizer and
    the hash of its text, so a changed file is a different experiment in the run store. Empty
    for the bundled corpus by characters, so those runs keep the identity they always had.
    Checks the file (readable UTF-8 text) and the tokenizer before any run starts."""
    from actlab.config import TOKENIZERS
    from actlab.data import load_corpus
    from actlab.data.corpus import corpus_hash
    from actlab.errors import ActlabError

    if tokenizer not in TOKENIZERS:
        raise ActlabError(f"unknown tokenizer {tokenizer!r}; valid: {', '.join(TOKENIZERS)}")
    keys = {} if tokenizer == "char" else {"tokenizer": tokenizer}
    if data is not None:
        from pathlib import Path

        path = str(Path(data).expanduser().resolve())
        text, _ = load_corpus(path)
        keys.update(data=path, data_hash=corpus_hash(text)[:16])
    return keys


def char_only(study: str, tokenizer: str) -> list[str]:
    """The caveat of a study whose models read characters whatever --tokenizer says."""
    if tokenizer == "char":
        return []
    return [f"{study} trains character-level models (its probes and MLP task are defined on "
            f"characters), so --tokenizer {tokenizer} does not apply to it"]


def corpus_record(bundle, data: str | None) -> dict:
    """What a verdict says of its corpus: name, path, hash, size in characters and, where a
    prepared `bundle` (DataBundle) is given, its tokenizer, tokens and baselines (the text is
    read again only without one)."""
    if bundle is None:
        from actlab.data import load_corpus
        from actlab.data.corpus import corpus_hash

        text, name = load_corpus(data)
        return {"name": name, "path": data or "bundled", "sha256": corpus_hash(text), "chars": len(text)}
    return {"name": bundle.name, "path": data or "bundled", "sha256": bundle.text_hash,
            "chars": bundle.chars, "tokenizer": bundle.tokenizer.kind, "vocab_size": bundle.vocab_size,
            "tokens": int(len(bundle.train_ids) + len(bundle.val_ids)), "baselines": bundle.baselines()}

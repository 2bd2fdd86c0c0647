"""A user's own claims, in the same form as the article's: a sentence, an experiment, a rule.

A claims file (TOML) lists comparisons of a candidate activation against a baseline on the
user's text. Each becomes a seed-paired experiment judged by one rule fixed here, before
any run:

    [[claim]]
    id = "mine-1"
    text = "my formula reaches a lower validation loss than gelu on my data"
    candidate = "x * sigmoid(1.702 * x)"   # a registry name, a formula or pkg.mod:fn
    baseline = "gelu"
    data = "notes/"        # optional: a .txt file or folder (default: the bundled corpus)
    seeds = 3              # optional (>= 2: the rule needs a paired interval)
    steps = 200            # optional
    margin = 0.0           # optional: nats by which the candidate must beat the baseline
    [claim.config]         # optional: any TrainConfig / ModelConfig key
    n_layer = 2
"""

from __future__ import annotations

import math
from pathlib import Path

from actlab.config import TrainConfig, load_config_file, merge
from actlab.errors import ActlabError
from actlab.analysis.stats import paired_test
from actlab.article.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from actlab.studies.base import Verdict
from actlab.studies.convergence.runs import train_job
from actlab.engine.sweep import run_grid

RULE = (
    "d = candidate - baseline final validation loss, paired over seeds (same initial weights and "
    "batches), 95% t-interval [lo, hi]. SUPPORTED if hi < -margin (the candidate is lower by more "
    "than the margin, with 95% confidence); NOT SUPPORTED if lo > -margin, or the candidate "
    "diverged on a seed where the baseline did not; INCONCLUSIVE otherwise."
)
KEYS = {"id", "text", "candidate", "baseline", "data", "seeds", "steps", "margin", "config"}
# Small enough for a laptop CPU; a claims file can override any of it under [claim.config].
BASE = dict(n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=16, lr=3e-3,
            warmup_steps=10, eval_every=50, eval_batches=8, device="auto", threads=0)


def load_claims(path: str | Path) -> list[dict]:
    """Parse and check a claims file; every problem is a one-line ActlabError."""
    raw = load_config_file(path)
    claims = raw.get("claim")
    if not isinstance(claims, list) or not claims:
        raise ActlabError(f"{path}: expected one or more [[claim]] tables")
    seen, out = set(), []
    for i, c in enumerate(claims):
        where = f"{path}: claim {i + 1}"
        if not isinstance(c, dict):
            raise ActlabError(f"{where}: must be a table")
        unknown = set(c) - KEYS
        if unknown:
            raise ActlabError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("id", "text", "candidate", "baseline"):
            if not isinstance(c.get(key), str) or not c[key].strip():
                raise ActlabError(f"{where}: '{key}' must be a non-empty string")
        if c["id"] in seen:
            raise ActlabError(f"{where}: duplicate id {c['id']!r}")
        seen.add(c["id"])
        seeds, steps, margin = c.get("seeds", 3), c.get("steps", 200), c.get("margin", 0.0)
        if not isinstance(seeds, int) or seeds < 2:
            raise ActlabError(f"{where}: 'seeds' must be a whole number >= 2")
        if not isinstance(margin, (int, float)) or margin < 0:
            raise ActlabError(f"{where}: 'margin' must be a number >= 0")
        overrides = {**BASE, **(c.get("config") or {}), "steps": steps, "data": c.get("data")}
        # validates the activations, sizes and keys now, before any run starts
        for act in (c["candidate"], c["baseline"]):
            merge(TrainConfig(), {**overrides, "act": act})
        out.append({**c, "seeds": seeds, "margin": float(margin), "overrides": overrides})
    return out


def decide(diff: dict, candidate_only_diverged: int) -> str:
    """The rule above, on a paired test of candidate - baseline and the divergence count."""
    if candidate_only_diverged > 0:
        return NOT_SUPPORTED
    lo, hi = diff["lo"], diff["hi"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    margin = diff.get("margin", 0.0)
    if hi < -margin:
        return SUPPORTED
    if lo > -margin:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def run_claim(claim: dict, preset: str, out_dir: str | Path, progress: bool = True) -> Verdict:
    """Run one user claim's paired experiment (stored in out_dir) and judge it."""
    from actlab.data import load_corpus
    from actlab.data.corpus import corpus_hash

    text, _ = load_corpus(claim["overrides"]["data"])
    data_hash = corpus_hash(text)[:16]  # a changed file is a different experiment
    jobs = [{**claim["overrides"], "act": act, "seed": seed, "data_hash": data_hash}
            for seed in range(claim["seeds"]) for act in (claim["candidate"], claim["baseline"])]
    results = run_grid("user-claim", jobs, train_job, out_dir, progress=progress)
    loss = {(r["params"]["act"], r["params"]["seed"]): r.get("final_val_loss") for r in results}
    pairs, cand_only = [], 0
    for seed in range(claim["seeds"]):
        a, b = loss[(claim["candidate"], seed)], loss[(claim["baseline"], seed)]
        a_ok, b_ok = a is not None and math.isfinite(a), b is not None and math.isfinite(b)
        cand_only += (not a_ok) and b_ok
        if a_ok and b_ok:
            pairs.append((a, b))
    diff = paired_test([p[0] for p in pairs], [p[1] for p in pairs]) if len(pairs) >= 2 else \
        {"diff": math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan, "n": len(pairs)}
    diff["margin"] = claim["margin"]
    verdict = decide(diff, cand_only)
    summary = (f"{claim['candidate']} - {claim['baseline']}: {diff['diff']:+.4f} nats "
               f"[{diff['lo']:+.4f}, {diff['hi']:+.4f}] over {diff['n']} seeds (p = {diff['p']:.3g})")
    return Verdict(
        claim=claim["id"], quote=claim["text"], rule=RULE.replace("margin", f"margin ({claim['margin']:g})", 1),
        verdict=verdict, preset=preset, study="user-claim", summary=summary,
        evidence={"candidate": claim["candidate"], "baseline": claim["baseline"], "paired": diff,
                  "candidate_only_diverged": cand_only, "losses": {f"{k[0]} seed {k[1]}": v for k, v in loss.items()},
                  "config": claim["overrides"]},
        caveats=["a small model trained briefly: the ranking can change with scale and training length"],
    )

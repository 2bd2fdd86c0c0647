"""A user's own claims, in the same form as the article's: a sentence, an experiment, a rule.

A claims file (TOML) lists comparisons of a candidate activation against a baseline on the
user's text. Each becomes a seed-paired experiment judged by one rule fixed here, before
any run:

    [[claim]]
    id = "mine-1"          # letters, digits, . _ - (it names the folder user-<id>)
    text = "my formula reaches a lower validation loss than gelu on my data"
    candidate = "x * sigmoid(1.702 * x)"   # a registry name, a formula or pkg.mod:fn
                                           # (an import path runs code: only with --trust-code)
    baseline = "gelu"
    data = "notes/"        # optional: a .txt file or folder (default: the bundled corpus)
    seeds = 3              # optional, 2 to 100 (the rule needs a paired interval)
    steps = 200            # optional
    margin = 0.0           # optional: nats by which the candidate must beat the baseline
    [claim.config]         # optional: any TrainConfig / ModelConfig key but act, seed,
    n_layer = 2            # steps and data, which the claim sets itself

Everything is checked when the file is loaded, before any run: a bad value names the file,
the claim and the field in one line.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from actlab.config import MAX_STEPS, TrainConfig, load_config_file, merge
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
    "diverged on a seed where the baseline did not; INCONCLUSIVE otherwise. A run that failed "
    "with an error is no result: while any has, the claim gets no verdict."
)
KEYS = {"id", "text", "candidate", "baseline", "data", "seeds", "steps", "margin", "config"}
# An id names the claim's folder (user-<id>) under the audit folder: a plain file name, so that
# nothing a claim writes can land outside it.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_SEEDS = 100
MAX_MARGIN = 1e6  # nats: losses are a few nats, so a larger margin compares nothing
# Keys a claim sets itself, so [claim.config] may not: the runs' own act and seed, and the
# claim's top-level steps and data.
CLAIM_SET = {"act": "candidate and baseline", "seed": "seeds", "steps": "steps", "data": "data"}
# Small enough for a laptop CPU; a claims file can override any of it under [claim.config].
BASE = dict(n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=16, lr=3e-3,
            warmup_steps=10, eval_every=50, eval_batches=8, device="auto", threads=0)


class ClaimRunsFailed(RuntimeError):
    """Runs of a claim's experiment raised: errors are not results, so there is no verdict."""


def check_id(claim_id: object, where: str) -> str:
    """The id, if it is a safe folder name (ID_PATTERN, no '..'); else a one-line ActlabError."""
    if not (isinstance(claim_id, str) and ID_PATTERN.fullmatch(claim_id) and ".." not in claim_id):
        raise ActlabError(
            f"{where}: 'id' must be 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit, without '..'; got {_shown(claim_id)}"
        )
    return claim_id


def _shown(value: object) -> str:
    """repr(value) in at most 80 characters (a value from a file can be of any size)."""
    if isinstance(value, int) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def claim_folder(out_dir: str | Path, claim_id: str) -> Path:
    """Where a claim's runs and verdict go, out_dir/user-<id>, resolved (symlinks too) and
    checked to lie directly inside out_dir."""
    check_id(claim_id, f"claim {claim_id!r}")
    root = Path(out_dir).resolve()
    folder = (root / f"user-{claim_id}").resolve()
    if folder.parent != root:
        raise ActlabError(f"claim {claim_id!r}: its folder {folder} is outside {root}")
    return folder


def load_claims(path: str | Path, *, trust_code: bool = False) -> list[dict]:
    """Parse and check a claims file; every problem is a one-line ActlabError naming the file,
    the claim and the field. Everything a run needs is checked here, before any run: the
    activations (probed; an import path only with `trust_code`, since it runs code), the config
    keys and sizes, and that each `data` path exists and reads as text."""
    raw = load_config_file(path, trust_code=trust_code)
    claims = raw.get("claim")
    if not isinstance(claims, list) or not claims:
        raise ActlabError(f"{path}: expected one or more [[claim]] tables")
    if set(raw) != {"claim"}:
        extra = ", ".join(sorted(repr(k) for k in set(raw) - {"claim"}))
        raise ActlabError(f"{path}: unknown top-level key(s) {extra}; a claims file holds [[claim]] tables")
    seen, out, corpora = set(), [], {}
    for i, c in enumerate(claims):
        where = f"{path}: claim {i + 1}"
        if not isinstance(c, dict):
            raise ActlabError(f"{where}: must be a table")
        cid = check_id(c.get("id"), where)
        where = f"{path}: claim {cid!r}"
        if cid in seen:
            raise ActlabError(f"{where}: duplicate id")
        seen.add(cid)
        unknown = set(c) - KEYS
        if unknown:
            raise ActlabError(f"{where}: unknown key(s) {', '.join(sorted(map(repr, unknown)))}")
        out.append(_check_claim(c, where, trust_code, corpora))
    return out


def _check_claim(c: dict, where: str, trust_code: bool, corpora: dict) -> dict:
    for key in ("text", "candidate", "baseline"):
        if not isinstance(c.get(key), str) or not c[key].strip() or "\x00" in c[key]:
            raise ActlabError(f"{where}: '{key}' must be a non-empty string without NUL bytes")
    seeds, steps, margin = c.get("seeds", 3), c.get("steps", 200), c.get("margin", 0.0)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 2 <= seeds <= MAX_SEEDS:
        raise ActlabError(f"{where}: 'seeds' must be a whole number from 2 to {MAX_SEEDS}, got {_shown(seeds)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ActlabError(f"{where}: 'steps' must be a whole number from 1 to {MAX_STEPS}, got {_shown(steps)}")
    number = isinstance(margin, (int, float)) and not isinstance(margin, bool)
    if not (number and (isinstance(margin, int) or math.isfinite(margin))
            and 0 <= margin <= MAX_MARGIN):
        raise ActlabError(f"{where}: 'margin' must be a finite number from 0 to {MAX_MARGIN:g} "
                          f"(nats), got {_shown(margin)}")
    config = c.get("config", {})
    if not isinstance(config, dict):
        raise ActlabError(f"{where}: 'config' must be a table of config keys, got {_shown(config)}")
    for section in (config, config.get("model"), config.get("train")):
        for key in sorted(set(section) & set(CLAIM_SET)) if isinstance(section, dict) else ():
            raise ActlabError(f"{where}: 'config' may not set {key!r}: the claim's "
                              f"{CLAIM_SET[key]} set it")
    data = c.get("data")
    if data is not None:
        if not isinstance(data, str) or not data.strip() or "\x00" in data:
            raise ActlabError(f"{where}: 'data' must be the path of a .txt file or folder, got {_shown(data)}")
        if data not in corpora:  # exists and reads as text, now rather than when its run starts
            from actlab.data import load_corpus

            try:
                corpora[data] = load_corpus(data)[1]
            except ActlabError as err:
                raise ActlabError(f"{where}: 'data': {err}") from None
    from actlab.activations import get_spec

    for key in ("candidate", "baseline"):
        try:  # probed here; an import path runs code, so a file needs trust_code for one
            get_spec(c[key], trust_code=trust_code)
        except ActlabError as err:
            raise ActlabError(f"{where}: '{key}': {err}") from None
    overrides = {**BASE, **config, "steps": steps, "data": data}
    try:  # validates the keys, values and sizes now, before any run starts
        for act in (c["candidate"], c["baseline"]):
            merge(TrainConfig(), {**overrides, "act": act})
    except ActlabError as err:
        raise ActlabError(f"{where}: 'config': {err}") from None
    return {**c, "seeds": seeds, "margin": float(margin), "overrides": overrides}


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
    """Run one user claim's paired experiment (stored in out_dir) and judge it.

    A run that raised is not a result: if any did, ClaimRunsFailed says how many and the first
    error, and there is no verdict (running again retries them; finished runs are kept).
    """
    from actlab.data import load_corpus
    from actlab.data.corpus import corpus_hash

    check_id(claim["id"], "claim")
    if ".." in Path(out_dir).parts:
        raise ActlabError(f"claim {claim['id']!r}: its folder {out_dir} must not contain '..'")
    text, _ = load_corpus(claim["overrides"]["data"])
    data_hash = corpus_hash(text)[:16]  # a changed file is a different experiment
    jobs = [{**claim["overrides"], "act": act, "seed": seed, "data_hash": data_hash}
            for seed in range(claim["seeds"]) for act in (claim["candidate"], claim["baseline"])]
    results = run_grid("user-claim", jobs, train_job, out_dir, progress=progress)
    failed = [r for r in results if r.get("outcome") == "error"]
    if failed:
        cand = sum(r["params"]["act"] == claim["candidate"] for r in failed)
        first = failed[0]
        raise ClaimRunsFailed(
            f"claim {claim['id']!r}: {len(failed)} of {len(results)} runs failed ({cand} of "
            f"{claim['seeds']} candidate runs), so there is no verdict; first, "
            f"{first['params']['act']} seed {first['params']['seed']}: {first.get('error')}"
        )
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

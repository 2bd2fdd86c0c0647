"""Training runs shared by study C3 (convergence) and `actlab compare`, and the seed-paired
analysis of their stored results: per-activation means with 95% CIs, divergences counted and
ranked last, paired tests with Holm's correction, and steps to a target loss.
"""

from __future__ import annotations

import math
import time

import numpy as np

from actlab.analysis.stats import mean_ci, paired_test

SMOOTH = 10  # steps in the trailing mean of the training loss

# Keys of a job that are not TrainConfig fields (they only label or identify the run).
JOB_ONLY = ("stage", "data_hash")


# -- one run (module level: run_grid may hand it to worker processes) -----------------------

_DATA: dict = {}


def prepared(path, tokenizer: str, block_size: int, bpe_vocab: int = 1024,
             val_fraction: float = 0.1):
    """The prepared corpus, tokenized once per process and shared by every run of a sweep;
    checks that both splits hold a context of block_size tokens."""
    from actlab.data import check_length, prepare

    key = (path, tokenizer, bpe_vocab, val_fraction)
    if key not in _DATA:
        _DATA[key] = prepare(path, tokenizer, 1, vocab_size=bpe_vocab, val_fraction=val_fraction)
    data = _DATA[key]
    where = path or "the bundled corpus"
    check_length(data.train_ids, block_size, f"{where}: training split")
    check_length(data.val_ids, block_size, f"{where}: validation split")
    return data


def train_job(params: dict) -> dict:
    """Train one GPT from a flat dict of TrainConfig keys; return losses, speed and history.

    Shared by study C3 and `actlab compare`. A diverged run's final_val_loss is NaN.
    """
    from actlab.config import TrainConfig
    from actlab.training.loop import step_seconds, train

    t0, cpu0 = time.perf_counter(), time.process_time()
    cfg = TrainConfig.from_dict({k: v for k, v in params.items() if k not in JOB_ONLY})
    data = prepared(cfg.data, cfg.tokenizer, cfg.model.block_size, cfg.bpe_vocab, cfg.val_fraction)
    run = train(cfg, data=data, progress=False)
    finite = run.outcome == "completed" and run.val_loss is not None and math.isfinite(run.val_loss)
    history = [{k: r[k] for k in ("step", "train_loss", "val_loss", "time_s") if k in r}
               for r in run.history]
    return {
        "outcome": run.outcome, "final_val_loss": run.val_loss if finite else float("nan"),
        "train_loss": run.train_loss, "tokens_per_s": run.tokens_per_s, "n_params": run.n_params,
        "step_s": step_seconds(run.history),
        "steps": run.steps, "train_seconds": run.seconds, "wall_s": time.perf_counter() - t0,
        # CPU seconds of this process: what the run costs on an idle core, whatever the load
        "cpu_s": time.process_time() - cpu0, "history": history,
    }


# A seed-to-seed range of final losses above this many nats (ten times the seed std Shazeer 2020
# reports, 0.005 at 65k steps; five times the 0.02 nats the gates study calls material) is named
# in the caveats of the study and in `actlab compare`'s notes: it does not change a verdict or a
# ranking, it tells the reader not to trust a rank.
SEED_SPREAD = 0.1


# -- analysis of stored results (pure functions: the tests call them on hand-built data) ----

def loss_of(result: dict) -> float:
    v = result.get("final_val_loss")
    return float(v) if v is not None and math.isfinite(v) else math.inf


def by_seed(results: list[dict]) -> dict[str, dict[int, dict]]:
    """{act: {seed: result}} of the evaluation runs."""
    out: dict[str, dict[int, dict]] = {}
    for r in results:
        out.setdefault(r["params"]["act"], {})[r["params"]["seed"]] = r
    return out


def smoothed(history: list[dict], window: int = SMOOTH) -> tuple[list[int], list[float]]:
    """(steps taken, trailing mean of the training loss over `window` steps)."""
    steps, losses = [], []
    for row in history:
        steps.append(int(row["step"]) + 1)
        losses.append(float(row["train_loss"]) if row.get("train_loss") is not None else math.nan)
    x = np.asarray(losses, dtype=np.float64)
    out = [float(x[max(0, i - window + 1): i + 1].mean()) for i in range(len(x))]
    return steps, out


def steps_to(history: list[dict], target: float) -> int | None:
    steps, loss = smoothed(history)
    return next((s for s, v in zip(steps, loss) if math.isfinite(v) and v <= target), None)


def holm(pvalues: list[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values; NaN counts as 1."""
    p = [1.0 if not math.isfinite(v) else v for v in pvalues]
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def summarize(runs: dict[str, dict[int, dict]], seeds) -> dict[str, dict]:
    """Per activation: final losses by seed (None where not finite), mean with 95% CI,
    divergences, errors (a job that raised), size and speed."""
    out = {}
    for act, per_seed in runs.items():
        done = [per_seed[s] for s in seeds if s in per_seed]
        losses = [loss_of(per_seed[s]) if s in per_seed else math.nan for s in seeds]
        out[act] = {
            **mean_ci([v for v in losses if math.isfinite(v)]),
            "losses": [v if math.isfinite(v) else None for v in losses],
            "n_diverged": sum(r.get("outcome") == "diverged" for r in done),
            "n_errors": sum(r.get("outcome") == "error" for r in done),
            "n_params": next((r["n_params"] for r in done if r.get("n_params")), None),
            "tokens_per_s": mean_ci([r["tokens_per_s"] for r in done if "tokens_per_s" in r]),
        }
    return out


def rank(summary: dict[str, dict]) -> list[str]:
    """Best first: activations with fewer divergences first, then by mean final loss."""
    def key(act):
        m = summary[act]["mean"]
        return (summary[act]["n_diverged"], m if math.isfinite(m) else math.inf, act)
    return sorted(summary, key=key)


def compare(summary: dict, a: str, b: str) -> dict:
    """Paired test of a - b over the seeds where both are finite, plus divergence counts."""
    pa, pb = summary[a]["losses"], summary[b]["losses"]
    pairs = [(x, y) for x, y in zip(pa, pb) if x is not None and y is not None]
    test = paired_test([x for x, _ in pairs], [y for _, y in pairs]) if pairs else {
        "diff": math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan, "n": 0}
    return {**test, "n_seeds": len(pa),
            "a_only_diverged": sum(x is None and y is not None for x, y in zip(pa, pb)),
            "b_only_diverged": sum(y is None and x is not None for x, y in zip(pa, pb)),
            "b_mean": summary[b]["mean"]}


def seed_spread(summary: dict, limit: float = SEED_SPREAD) -> dict[str, float]:
    """Activations whose finite final losses range over more than `limit` nats across seeds,
    with that range: their seeds did not settle to one outcome."""
    out = {}
    for act, s in summary.items():
        losses = [v for v in s.get("losses", []) if v is not None and math.isfinite(v)]
        spread = max(losses) - min(losses) if len(losses) >= 2 else 0.0
        if spread > limit:
            out[act] = spread
    return out


def spread_note(spread: dict[str, float], limit: float = SEED_SPREAD) -> str:
    """seed_spread's finding in words, for a caveat or a note."""
    return (f"final losses differ by more than {limit} nats between seeds for: "
            + ", ".join(f"{a} {v:.2f}" for a, v in spread.items()))

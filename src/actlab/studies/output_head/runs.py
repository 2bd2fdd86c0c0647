"""Measuring an output head (pure functions the tests call on hand-built tensors) and one run of
study C4: a GPT with a softmax-CE or sigmoid-BCE head, tracked on fixed validation batches.
Module level so that run_grid can hand `head_job` to worker processes.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

N_BINS = 15  # calibration bins
LOG10_EDGES = np.linspace(-2.0, 2.0, 401)  # histogram of log10 Σp (2.3% bins), ends clamped
JOB_ONLY = ("vocab", "final_batches", "track_every", "track_batches", "data_hash")


@torch.no_grad()
def head_outputs(logits: torch.Tensor, targets: torch.Tensor, head: str) -> dict[str, torch.Tensor]:
    """Per position (flattened): sum_p, nll (-log of the target's normalised probability),
    conf (top-1 normalised probability), correct; for sigmoid also nll_raw and conf_raw
    (the unnormalised p). Computed in float64 so Σp is exact to ~1e-12."""
    z = logits.reshape(-1, logits.size(-1)).double()
    y = targets.reshape(-1)
    if head == "softmax":
        logp = F.log_softmax(z, dim=-1)
        p = logp.exp()
        conf, pred = p.max(-1)
        return {"sum_p": p.sum(-1), "nll": -logp.gather(1, y[:, None])[:, 0], "conf": conf,
                "correct": (pred == y).double()}
    logp = F.logsigmoid(z)  # log of each independent p_v
    log_sum = torch.logsumexp(logp, dim=-1)  # log Σp, stable for any V
    nll_raw = -logp.gather(1, y[:, None])[:, 0]
    conf_raw, pred = logp.max(-1)
    return {"sum_p": log_sum.exp(), "nll": nll_raw + log_sum, "nll_raw": nll_raw,
            "conf": (conf_raw - log_sum).exp(), "conf_raw": conf_raw.exp(),
            "correct": (pred == y).double()}


def calibration(conf, correct, n_bins: int = N_BINS) -> dict:
    """ECE = Σ_b (n_b / N) |acc_b - conf_b| over equal-width bins ((b-1)/B, b/B] of the top-1
    confidence (Guo et al. 2017, eq. 3). Per-bin sums are kept so seeds can be pooled."""
    conf = np.asarray(conf, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    ece = float(np.abs(hit_sum - conf_sum).sum() / max(len(conf), 1))
    return {"ece": ece, "count": count.tolist(), "conf_sum": conf_sum.tolist(),
            "hit_sum": hit_sum.tolist()}


def sum_p_stats(sum_p) -> dict:
    """Distribution of Σp over positions, and a histogram of log10 Σp on LOG10_EDGES."""
    s = np.asarray(sum_p, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return {"n": 0}
    logs = np.clip(np.log10(np.maximum(s, 1e-300)), LOG10_EDGES[0], LOG10_EDGES[-1])
    return {
        "n": int(s.size), "mean": float(s.mean()), "median": float(np.median(s)),
        "p5": float(np.percentile(s, 5)), "p95": float(np.percentile(s, 95)),
        "std": float(s.std()), "min": float(s.min()), "max": float(s.max()),
        "mean_abs_dev": float(np.abs(s - 1.0).mean()),
        "hist": np.histogram(logs, bins=LOG10_EDGES)[0].tolist(),
        "hist_log10_range": [float(LOG10_EDGES[0]), float(LOG10_EDGES[-1])],
    }


def token_bytes(tokenizer) -> torch.Tensor:
    """UTF-8 bytes of each token id, so a loss per token becomes a loss per byte of text."""
    kind, size = tokenizer.kind, tokenizer.vocab_size
    if kind == "byte":
        return torch.ones(size, dtype=torch.float64)
    if kind == "bpe":  # byte-level BPE: one alphabet symbol per byte (GPT-2 byte mapping)
        return torch.tensor([len(tokenizer.hf.id_to_token(i)) for i in range(size)], dtype=torch.float64)
    # char: id 0 is the unknown character, counted as one byte
    return torch.tensor([1] + [len(c.encode("utf-8")) for c in tokenizer.chars], dtype=torch.float64)


@torch.no_grad()
def measure(model, batches, head: str, nbytes: torch.Tensor) -> dict:
    """Loss per byte, Σp distribution and calibration of `model` on fixed (x, y) batches."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts: dict[str, list] = {}
    for x, y in batches:
        logits, _ = model(x.to(device))
        out = head_outputs(logits, y.to(device), head)
        out["bytes"] = nbytes.to(device)[y.reshape(-1).to(device)]
        for k, v in out.items():
            parts.setdefault(k, []).append(v.cpu())
    model.train(was_training)
    cat = {k: torch.cat(v).numpy() for k, v in parts.items()}
    total_bytes = float(cat["bytes"].sum())
    res = {
        "nats_per_byte": float(cat["nll"].sum() / total_bytes),
        "nats_per_token": float(cat["nll"].mean()), "bytes_per_token": float(cat["bytes"].mean()),
        "accuracy": float(cat["correct"].mean()), "sum_p": sum_p_stats(cat["sum_p"]),
        "calibration": {head if head == "softmax" else "sigmoid_renorm":
                        calibration(cat["conf"], cat["correct"])},
    }
    if head == "sigmoid":
        res["raw_nats_per_byte"] = float(cat["nll_raw"].sum() / total_bytes)
        res["calibration"]["sigmoid_raw"] = calibration(cat["conf_raw"], cat["correct"])
    return res


class Tracker:
    """Trainer callback: keeps the model and measures the head on a few fixed validation
    batches every `every` steps, so the spread of Σp over training is on record."""

    def __init__(self, head: str, batches, nbytes: torch.Tensor, every: int):
        self.head, self.batches, self.nbytes, self.every = head, batches, nbytes, every
        self.model, self.rows = None, []

    def after_step(self, step: int, model) -> None:
        self.model = model
        if step == 0 or (step + 1) % self.every == 0:
            m = measure(model, self.batches, self.head, self.nbytes)
            s = m["sum_p"]
            self.rows.append({"step": step, "val_nats_per_byte": m["nats_per_byte"],
                              **{f"sum_p_{k}": s.get(k, math.nan) for k in ("mean", "p5", "p95")}})


# -- one run (module level: run_grid may hand it to worker processes) ---------------------------

def _config(params: dict):
    from actlab.config import TrainConfig

    keys = {k: v for k, v in params.items() if k not in JOB_ONLY}
    if params["tokenizer"] == "bpe":
        keys["bpe_vocab"] = params["vocab"]
    # the trainer's own evaluation (CE or BCE, not comparable) runs once, at the end
    keys.update(eval_every=params["steps"], eval_batches=1)
    return TrainConfig.from_dict(keys)


def _data(cfg):
    from actlab.data import prepare

    return prepare(cfg.data, cfg.tokenizer, cfg.model.block_size, vocab_size=cfg.bpe_vocab,
                   val_fraction=cfg.val_fraction)


def data_baselines(params: dict) -> dict:
    """The n-gram baselines (nats per token, DataBundle.baselines) of the data that head_job
    trains on for these params: the same corpus, tokenizer and split."""
    return _data(_config(params)).baselines()


def head_job(params: dict) -> dict:
    """Train one GPT with the given head; measure it on fixed validation batches."""
    from actlab.data import eval_batches, load_corpus
    from actlab.training.loop import train

    cpu0 = time.process_time()  # CPU time: comparable across runs on a shared machine
    cfg = _config(params)
    data = _data(cfg)
    text, _ = load_corpus(cfg.data)  # chars/token of the validation split, as prepare() cut it
    val_chars = len(text) - int(len(text) * (1.0 - cfg.val_fraction))
    nbytes = token_bytes(data.tokenizer)
    block, batch = cfg.model.block_size, cfg.batch_size
    tracker = Tracker(params["head"], eval_batches(data.val_ids, block, batch, params["track_batches"]),
                      nbytes, params["track_every"])
    run = train(cfg, data=data, callbacks=(tracker,), progress=False)
    final = measure(tracker.model, eval_batches(data.val_ids, block, batch, params["final_batches"]),
                    params["head"], nbytes) if tracker.model is not None else {}
    tracked = {r["step"]: r for r in tracker.rows}
    history = [{"step": r["step"], "train_loss": r["train_loss"], "grad_norm": r["grad_norm"],
                **tracked.get(r["step"], {})} for r in run.history]
    return {"outcome": run.outcome, "steps": run.steps, "vocab_size": data.vocab_size,
            "val_chars_per_token": val_chars / len(data.val_ids), "n_params": run.n_params,
            "train_seconds": run.seconds, "cpu_seconds": time.process_time() - cpu0,
            "final": final, "history": history}

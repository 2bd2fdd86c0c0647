"""The training run shared by study C3 (convergence) and `actlab compare`: one GPT from a flat
dict of TrainConfig keys, on a corpus tokenized once per process. The seed-paired analysis of
the stored runs is actlab.analysis.ranking.
"""

from __future__ import annotations

import math
import time

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

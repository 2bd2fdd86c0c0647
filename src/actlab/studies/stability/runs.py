"""The two stages of study C7, both `run_grid` calls of C3's job function
(`convergence.runs.train_job`, which records wall-clock and process CPU seconds beside the
losses): every activation at every grid rate on the tuning seed, then the evaluation seeds at
each activation's best grid rate. The second stage depends on what the first stored."""

from __future__ import annotations

from pathlib import Path

from actlab.engine.sweep import run_grid
from actlab.studies import common
from actlab.studies.convergence.runs import train_job

STUDY = "stability"


def job(preset: dict, act: str, lr: float, seed: int, stage: str, corpus: dict) -> dict:
    """One run's parameters, laid out as C3's are (stage, model, training, act, lr, seed,
    corpus keys)."""
    return {"stage": stage, **preset["model"], **preset["train"], "act": act, "lr": lr,
            "seed": seed, **corpus}


def grid_runs(preset: dict, out: Path, progress: bool, corpus: dict) -> list[dict]:
    """Every activation at every grid rate on the tuning seed. Rate-major order, so the first
    jobs of each worker (which pay its one-off start-up) are low-rate runs of several
    activations rather than one activation's runs."""
    jobs = [job(preset, a, lr, common.TUNE_SEED, "tune", corpus)
            for lr in preset["lrs"] for a in preset["acts"]]
    return run_grid(STUDY, jobs, train_job, out, progress=progress)


def eval_runs(preset: dict, best: dict[str, float], out: Path, progress: bool,
              corpus: dict) -> dict[str, dict[int, dict]]:
    """{act: {seed: result}} of the evaluation seeds at each activation's best rate (`best`),
    seed-major so every activation's first seed starts in the same round."""
    jobs = [job(preset, a, best[a], s, "eval", corpus) for s in preset["seeds"] for a in best]
    out_runs: dict[str, dict[int, dict]] = {}
    for r in run_grid(STUDY, jobs, train_job, out, progress=progress):
        out_runs.setdefault(r["params"]["act"], {})[r["params"]["seed"]] = r
    return out_runs

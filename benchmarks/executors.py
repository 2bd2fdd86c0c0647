#!/usr/bin/env python
"""Sweep wall time: W local workers x 1 torch thread each, against 1 worker x W threads.

Both layouts run the same study-like sweep through actlab.engine.sweep.run_grid (fresh results
folders, so nothing is skipped): tiny GPTs trained with actlab.training.loop.train for a few seconds
each, several activations and seeds. The fork server is warmed first so neither layout pays
its one-time start. Rounds alternate which layout goes first, since the cores may be shared.
Prints each layout's median wall time and the ratio (1 x W) / (W x 1): above 1 means running
jobs side by side is faster than splitting every job across the threads; and the start-up
cost of W workers, forked from run_grid's fork server or spawned.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_threads  # noqa: E402

from actlab.config import ModelConfig, TrainConfig  # noqa: E402
from actlab.engine.sweep import run_grid  # noqa: E402

ACTS = ("gelu", "relu", "sigmoid")


@functools.lru_cache(maxsize=None)
def _data(block_size: int):
    from actlab.data import prepare

    return prepare(None, "char", block_size)


def train_job(params: dict) -> dict:
    """One study-like run: a tiny character-level GPT on the bundled corpus."""
    from actlab.training.loop import train

    data = _data(params["block_size"])
    model = ModelConfig(vocab_size=data.vocab_size, block_size=params["block_size"], n_layer=2,
                        n_head=4, n_embd=params["n_embd"], act=params["act"])
    cfg = TrainConfig(model=model, seed=params["seed"], steps=params["steps"], batch_size=16,
                      warmup_steps=5, eval_every=params["steps"], eval_batches=4, device="cpu")
    res = train(cfg, data=data, progress=False)
    return {"val_loss": res.val_loss, "train_loss": res.train_loss, "tokens_per_s": res.tokens_per_s}


def _noop(params: dict) -> dict:
    return {"i": params["i"]}


def _import_train(i: int) -> int:
    import torch._dynamo  # noqa: F401 - what a fresh worker imports before its first optimizer

    import actlab.training.loop  # noqa: F401
    return i


def startup_seconds(w: int) -> dict:
    """Seconds to start W local workers and run one trivial job each: run_grid's fork server
    (its first start in this process, then with it running) against a spawned pool."""
    out = {}
    for key in ("forkserver_first", "forkserver_running"):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_grid("warm", [{"i": i} for i in range(w)], _noop, tmp, progress=False, workers=w)
            out[key] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ProcessPoolExecutor(w, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_import_train, range(w)))
    out["spawn"] = time.perf_counter() - t0
    return out


def sweep_seconds(jobs: list[dict], workers: int, threads: int) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        results = run_grid("bench", jobs, train_job, tmp, progress=False, workers=workers,
                           threads=threads)
        seconds = time.perf_counter() - t0
    bad = [r for r in results if r.get("outcome") == "error"]
    if bad:
        raise SystemExit(f"a benchmark job failed: {bad[0]['error']}")
    return seconds, [r["val_loss"] for r in results]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cores", type=int, default=default_threads(),
                   help="W: workers in one layout, threads per job in the other")
    p.add_argument("--seeds", type=int, default=2, help="seeds per activation (jobs = 3 x seeds)")
    p.add_argument("--steps", type=int, default=60, help="training steps per job")
    p.add_argument("--n-embd", type=int, default=64, help="model width (2 layers, 4 heads)")
    p.add_argument("--block-size", type=int, default=64, help="context length in tokens")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; times are medians")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args(argv)
    if min(args.cores, args.seeds, args.steps, args.rounds) < 1:
        p.error("--cores, --seeds, --steps and --rounds must be >= 1")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    w = args.cores
    jobs = [{"act": a, "seed": s, "steps": args.steps, "n_embd": args.n_embd,
             "block_size": args.block_size} for a in ACTS for s in range(args.seeds)]
    layouts = {f"{w}x1": (w, 1), f"1x{w}": (1, w)}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    startup = startup_seconds(w)  # also starts the fork server outside the sweep timings
    times: dict[str, list[float]] = {name: [] for name in layouts}
    losses: dict[str, list[float]] = {}
    for rnd in range(args.rounds):
        order = list(layouts) if rnd % 2 == 0 else list(layouts)[::-1]
        for name in order:
            seconds, losses[name] = sweep_seconds(jobs, *layouts[name])
            times[name].append(seconds)
    side, split = statistics.median(times[f"{w}x1"]), statistics.median(times[f"1x{w}"])
    result = {
        "cores": w, "jobs": len(jobs), "steps": args.steps, "n_embd": args.n_embd,
        "block_size": args.block_size, "load_avg_1min_before": load, "startup_seconds": startup,
        "seconds": times,
        f"median_{w}x1": side, f"median_1x{w}": split, "ratio": split / side,
        # Thread count can change float reductions: are 1-thread and W-thread losses equal?
        "losses_bitwise_equal": losses[f"{w}x1"] == losses[f"1x{w}"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return result
    print(f"{len(jobs)} jobs (tiny GPT, 2 layers x {args.n_embd}, context {args.block_size}, "
          f"{args.steps} steps), {args.rounds} rounds; load average before: {load}")
    print(f"  starting {w} workers: fork server {startup['forkserver_first']:.2f} s the first time, "
          f"{startup['forkserver_running']:.2f} s once running; spawn {startup['spawn']:.2f} s")
    for name in layouts:
        print(f"  {name:>5} (workers x threads): median {statistics.median(times[name]):6.2f} s   "
              f"rounds {', '.join(f'{t:.2f}' for t in times[name])}")
    print(f"  ratio 1x{w} / {w}x1 = {result['ratio']:.3f} (> 1: {w} workers x 1 thread is faster)")
    print(f"  val losses bitwise equal across thread counts: {result['losses_bitwise_equal']}")
    return result


if __name__ == "__main__":
    main()

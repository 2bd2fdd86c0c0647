#!/usr/bin/env python
"""Where a budget reaches the regime: the final validation loss of GELU GPTs of a few sizes
trained for a few step counts, beside the corpus's n-gram baselines, with the CPU-seconds each
run cost on one thread (what a sweep worker runs). The presets' sizes are chosen from this table:
the smallest budget whose GELU reference ends below the trigram baseline, with a margin.

Each row is its own run (the cosine schedule spans the run's own steps), so a row's loss is what
a study of that length would see. CPU-seconds are process time, which load from other processes
does not inflate much; wall time on a shared machine would.

    python benchmarks/regime_calibration.py                       # bundled corpus, default grid
    python benchmarks/regime_calibration.py --data my.txt --sizes 2x64 --steps 500,1000
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _common then puts this checkout's src/ first
from _common import device_name  # noqa: E402

import torch  # noqa: E402

from actlab.config import ModelConfig, TrainConfig  # noqa: E402
from actlab.data import prepare  # noqa: E402
from actlab.training import allocator  # noqa: E402
from actlab.training.loop import train  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="a .txt file or folder (default: the bundled corpus)")
    p.add_argument("--acts", default="gelu", help="comma-separated activations (default: gelu)")
    p.add_argument("--sizes", default="1x64,2x48,2x64", help="LAYERSxWIDTH, comma-separated")
    p.add_argument("--steps", default="400,800,1200", help="run lengths in steps, comma-separated")
    p.add_argument("--block-size", type=int, default=64, help="context in tokens (default 64)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per step (default 32)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON here")
    args = p.parse_args()
    allocator.keep_freed_memory()
    torch.set_num_threads(1)
    data = prepare(args.data, "char", args.block_size)
    base = data.baselines()
    print(f"{device_name(torch.device('cpu'))}, torch {torch.__version__}, 1 thread; corpus "
          f"{data.name} ({data.text_hash[:12]}), {len(data.train_ids):,} training tokens")
    print("baselines (nats/token, " + base["smoothing"] + "): " +
          ", ".join(f"{o} {base[o]:.3f}" for o in ("unigram", "bigram", "trigram")))
    print(f"{'act':<8} {'size':>6} {'steps':>6} {'val loss':>9} {'- trigram':>9} {'cpu s':>7} {'wall s':>7}")
    rows = []
    for act in args.acts.split(","):
        for size in args.sizes.split(","):
            n_layer, n_embd = (int(v) for v in size.split("x"))
            for steps in (int(s) for s in args.steps.split(",")):
                model = ModelConfig(n_layer=n_layer, n_head=2, n_embd=n_embd,
                                    block_size=args.block_size, act=act)
                cfg = TrainConfig(model=model, seed=args.seed, steps=steps,
                                  batch_size=args.batch_size, lr=args.lr,
                                  warmup_steps=max(1, steps // 20), eval_every=steps,
                                  eval_batches=16, device="cpu", threads=1)
                cpu0, t0 = time.process_time(), time.perf_counter()
                run = train(cfg, data=data, progress=False)
                row = {"act": act, "size": size, "steps": steps, "val_loss": run.val_loss,
                       "minus_trigram": run.val_loss - base["trigram"],
                       "cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - t0}
                rows.append(row)
                print(f"{act:<8} {size:>6} {steps:>6} {row['val_loss']:9.4f} {row['minus_trigram']:+9.4f} "
                      f"{row['cpu_s']:7.1f} {row['wall_s']:7.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"baselines": base, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

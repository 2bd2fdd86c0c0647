#!/usr/bin/env python
"""How long study C4's reference needs to reach the regime at a BPE vocabulary: one softmax-head
GPT of the C4 standard size (2 x 64, context 64, batch 32, rate 3e-3) trained for `--steps`,
its loss per byte on fixed validation batches every 250 steps, against the trigram and bigram
tables of the same tokenizer converted to nats per byte (as studies/output_head/regimes.py does).

One cosine schedule spans the whole run, so a point half-way is not what a run of half the
length would end at (that one decays sooner and ends a little lower): the crossing step is an
upper bound on the budget a run of its own length needs. CPU-seconds are this process's time
on one thread, which load from other processes does not inflate much.

    python benchmarks/output_head_calibration.py --vocab 4096 --steps 6000 > c4-4096.json
    python benchmarks/output_head_calibration.py --plot curve.png c4-1024.json c4-4096.json
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

from actlab.studies.output_head.runs import data_baselines, head_job  # noqa: E402


def measure(vocab: int, steps: int, seed: int) -> dict:
    torch.set_num_threads(1)
    p = dict(n_layer=2, n_head=4, n_embd=64, block_size=64, steps=steps, batch_size=32, lr=3e-3,
             warmup_steps=50, device="cpu", tokenizer="bpe", vocab=vocab, head="softmax",
             seed=seed, final_batches=16, track_every=250, track_batches=8)
    base = data_baselines(p)
    t0 = time.perf_counter()
    r = head_job(p)
    bpt = r["final"]["bytes_per_token"]
    per_step = r["cpu_seconds"] / steps
    return {"vocab": vocab, "steps": steps, "seed": seed, "device": device_name(torch.device("cpu")),
            "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(r["cpu_seconds"], 1),
            "bytes_per_token": bpt, "trigram_per_byte": base["trigram"] / bpt,
            "bigram_per_byte": base["bigram"] / bpt,
            "final_nats_per_byte": r["final"]["nats_per_byte"],
            "curve": [(h["step"], round(h["val_nats_per_byte"], 4), round(h["step"] * per_step, 1))
                      for h in r["history"] if "val_nats_per_byte" in h]}


def plot(out: str, paths: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for path, color in zip(paths, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        d = json.loads(Path(path).read_text())
        steps, loss, _ = zip(*d["curve"][1:])
        ax.plot(steps, loss, color=color, label=f"softmax head, BPE-{d['vocab']}")
        ax.axhline(d["trigram_per_byte"], color=color, ls="--", lw=1,
                   label=f"trigram table, BPE-{d['vocab']} ({d['trigram_per_byte']:.3f})")
    ax.set_xlabel("step (batch 32 x 64 tokens; one cosine schedule over the run)")
    ax.set_ylabel("validation nats per byte")
    ax.set_title("C4's reference against its regime bar (2 x 64 GPT, one seed)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary size (default: 4096)")
    ap.add_argument("--steps", type=int, default=6000, help="training steps (default: 6000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", nargs="+", metavar=("OUT.png", "IN.json"),
                    help="draw the curves of earlier runs' JSON instead of training")
    args = ap.parse_args()
    if args.plot:
        plot(args.plot[0], args.plot[1:])
        return
    print(json.dumps(measure(args.vocab, args.steps, args.seed)))


if __name__ == "__main__":
    main()

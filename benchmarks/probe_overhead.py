#!/usr/bin/env python
"""Cost of the probes: training-step time of the quick-size GPT with no probes vs all probes.

Every configuration trains its own copy of one model (same seed, same init) on the same
pre-generated token batches: forward, backward, the probes' after_backward, clip to 1.0, AdamW,
zero_grad, after_step, loss.item() (the loop of actlab.training.loop). The timing is interleaved: each
round times a block of steps of every configuration in turn, rotating the order, so drift in a
shared machine's speed hits all alike. The overhead is the median over rounds of the per-round
ratio (probes / none) minus 1, from wall-clock time and from the process's CPU time; on a
shared CPU the wall clock also measures the neighbours, so the CPU-time ratio is the one to
trust there. Configurations: none, all, and each probe alone (grad, acts, sign, path), every
probe recording on every step. By default the process keeps freed memory for reuse, as actlab's
own processes do (actlab.training.allocator; `--malloc system` leaves glibc's allocator as it comes): the
probes' small per-step tensors would otherwise come back as fresh pages every step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_threads, device_name, sync  # noqa: E402  (puts this checkout's src/ first)
from actlab.training import allocator  # noqa: E402
from actlab.config import ModelConfig, TrainConfig  # noqa: E402
from actlab.nn.gpt import GPT  # noqa: E402
from actlab.probes import attach  # noqa: E402
from actlab.training.loop import make_optimizer  # noqa: E402

# The "quick" size: 4 layers, width 128, 4 heads, context 128, batch 16, a character vocabulary.
QUICK = dict(n_layer=4, n_embd=128, n_head=4, block_size=128)
BATCH, VOCAB, N_BATCHES = 16, 85, 4
CONFIGS = {  # name -> which probes are on
    "none": None,
    "all": dict(grad=True, acts=True, sign=True, path=True),
    "grad": dict(grad=True, acts=False, sign=False, path=False),
    "acts": dict(grad=False, acts=True, sign=False, path=False),
    "sign": dict(grad=False, acts=False, sign=True, path=False),
    "path": dict(grad=False, acts=False, sign=False, path=True),
}


class Runner:
    """One configuration's model, optimizer and probes, with its own position in the batches."""

    def __init__(self, name: str, act: str, batches, device: torch.device):
        self.name, self.batches, self.device = name, batches, device
        torch.manual_seed(0)
        cfg = ModelConfig(vocab_size=VOCAB, act=act, **QUICK)
        self.model = GPT(cfg).to(device)
        self.opt = make_optimizer(self.model, TrainConfig(model=cfg))
        self.stack = contextlib.ExitStack()
        kinds = CONFIGS[name]
        self.probes = self.stack.enter_context(attach(self.model, **kinds)) if kinds else None
        self.step_idx, self.times, self.cpu_times, self.losses = 0, [], [], []

    def step(self) -> None:
        x, y = self.batches[self.step_idx % len(self.batches)]
        _, loss = self.model(x, y)
        loss.backward()
        if self.probes:
            self.probes.after_backward(self.step_idx, self.model)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.probes:
            self.probes.after_step(self.step_idx, self.model)
        self.losses.append(loss.item())
        self.step_idx += 1

    def timed_block(self, k: int) -> None:
        sync(self.device)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(k):
            self.step()
        sync(self.device)
        self.times.append((time.perf_counter() - t0) / k)
        self.cpu_times.append((time.process_time() - c0) / k)


def run(args) -> dict:
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(1234)
    batches = []
    for _ in range(N_BATCHES):
        tok = torch.randint(0, VOCAB, (BATCH, QUICK["block_size"] + 1), generator=gen).to(device)
        batches.append((tok[:, :-1].contiguous(), tok[:, 1:].contiguous()))
    runners = [Runner(name, args.act, batches, device) for name in args.configs]
    t_start = time.perf_counter()
    try:
        for r in runners:
            for _ in range(args.warmup):
                r.step()
        for rnd in range(args.rounds):
            for j in range(len(runners)):  # rotate so no configuration always goes first
                runners[(j + rnd) % len(runners)].timed_block(args.steps)
        # Probes must not change the numbers: every configuration saw the same losses.
        base = runners[0].losses
        identical = all(r.losses == base for r in runners)
        summaries = {r.name: r.probes.summary() for r in runners if r.probes}
    finally:
        for r in runners:
            r.stack.close()
    none = next(r for r in runners if r.name == "none")
    out = {}
    for r in runners:
        ratios = [t / t0 for t, t0 in zip(r.times, none.times)]
        cpu_ratios = [t / t0 for t, t0 in zip(r.cpu_times, none.cpu_times)]
        out[r.name] = dict(ms_per_step=1e3 * statistics.median(r.times),
                           overhead=statistics.median(ratios) - 1.0,
                           cpu_ms_per_step=1e3 * statistics.median(r.cpu_times),
                           cpu_overhead=statistics.median(cpu_ratios) - 1.0)
    return dict(
        device=device_name(device), threads=torch.get_num_threads(), torch=torch.__version__,
        act=args.act, config=dict(**QUICK, batch=BATCH, vocab=VOCAB),
        rounds=args.rounds, steps_per_round=args.steps, warmup=args.warmup,
        load_avg_1min=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        losses_identical=identical, results=out,
        # A sanity number from the probes themselves (None without the "all" configuration).
        straightness_all=summaries.get("all", {}).get("path", {}).get("straightness"),
        seconds=time.perf_counter() - t_start,
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Training-step time of the quick-size GPT (4 layers x 128, 4 heads, context "
        "128, batch 16, vocabulary 85) without probes and with probes on every step, "
        "interleaved on identical batches; overhead = median per-round time ratio - 1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"configurations, from {', '.join(CONFIGS)} ('none' is always included)")
    p.add_argument("--act", default="sigmoid", help="FFN activation of the model")
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    p.add_argument("--steps", type=int, default=2, help="timed steps per configuration per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration first")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads; with one, CPU time (process_time) is a stable "
                   f"measure even on a shared machine (this one may use {default_threads()})")
    p.add_argument("--malloc", choices=("actlab", "system"), default="actlab",
                   help="actlab: keep freed memory for reuse, as actlab's processes do "
                   "(actlab.training.allocator); system: the C library's allocator as it comes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    names = [s.strip() for s in args.configs.split(",") if s.strip()]
    if bad := [s for s in names if s not in CONFIGS]:
        p.error(f"unknown configuration(s) {bad}")
    args.configs = ["none"] + [s for s in names if s != "none"]
    if min(args.rounds, args.steps, args.threads) < 1 or args.warmup < 0:
        p.error("--rounds, --steps and --threads must be >= 1, --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.malloc == "actlab":
        allocator.keep_freed_memory()
    torch.set_num_threads(args.threads)
    res = run(args)
    res["allocator"] = allocator.describe()
    if args.json:
        print(json.dumps(res, indent=2))
        return res
    c = res["config"]
    print(f"device {res['device']}, {res['threads']} threads, torch {res['torch']}; GPT "
          f"{c['n_layer']} x {c['n_embd']}, {c['n_head']} heads, context {c['block_size']}, "
          f"batch {c['batch']}, vocab {c['vocab']}, act {res['act']}; allocator {res['allocator']}")
    print(f"{res['rounds']} rounds x {res['steps_per_round']} steps (after {res['warmup']} warmup)"
          f"; every probe records every step")
    print(f"  {'probes':<8}{'ms/step':>10}{'overhead':>10}{'cpu ms':>10}{'cpu ovh':>10}")
    for name, d in res["results"].items():
        print(f"  {name:<8}{d['ms_per_step']:>10.1f}{d['overhead']:>+10.1%}"
              f"{d['cpu_ms_per_step']:>10.1f}{d['cpu_overhead']:>+10.1%}")
    print(f"losses identical across configurations: {res['losses_identical']}; "
          f"total {res['seconds']:.0f} s")
    return res


if __name__ == "__main__":
    main()

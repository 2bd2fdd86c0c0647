#!/usr/bin/env python
"""Training throughput of actlab's GPT against Hugging Face GPT-2 and a plain reference GPT.

Every implementation trains on the same pre-generated random token batches, one full step
at a time: forward, cross-entropy, backward, clip the global grad norm to 1.0, AdamW step,
zero_grad. The timing is interleaved: each round times a block of steps of every
implementation in turn (the order rotates between rounds), and the reported step time is
the median over rounds, so drift in a noisy machine's speed hits all competitors alike.
Compare implementations through the ratios; absolute tokens/s depend on the machine.

MFU uses the PaLM (Chowdhery et al. 2022, appendix B) count per token, forward plus
backward: 6 N + 12 L C T, with N the parameters outside the position table (the tied
token embedding is counted, since it is the output head's matmul) and the attention
term counted non-causally (the full T x T score matrix, as PaLM does). Its denominator is the
throughput of the step's own linear-layer GEMMs, in two versions: timed as one more entrant in
the interleaved rounds (so under the same load from elsewhere as the steps: the fair one on a
shared machine), and their best-of-3 peak before and after the rounds.

`actlab_compiled` (left out with --no-compile) is the same model and optimizer with the training
forward through actlab.training.compile.compile_model (torch.compile, inductor), as actlab trains runs of
2,000 steps or more by default (TrainConfig.compile = "auto"); its compilation happens in the first
warmup step, is timed separately and is not part of the step times.

OpenMP: torch's CPU threads wait for each other at the end of every parallel op, spinning for up
to GOMP_SPINCOUNT iterations before they sleep. On a machine whose cores other processes share,
a thread then spins on a partner that was preempted: with one busy process beside it, an S step
on 2 threads took 306 ms at libgomp's default spin count and 209 ms at 1000 (one thread: 175 ms;
on an idle machine 106 ms and 104 ms, no difference). So this script sets GOMP_SPINCOUNT=1000
before torch loads, unless the variable is already set; it applies to every implementation alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "1000")  # before torch loads libgomp (see the docstring)

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _common then puts this checkout's src/ first
from _common import (  # noqa: E402
    GemmSet, Timed, default_threads, device_name, model_shaped_gflops, spread, square_gemm_gflops,
    sync,
)
from _peers import VOCAB, actlab_config, build  # noqa: E402
from actlab.training import allocator  # noqa: E402
from actlab.nn.gpt import GPT  # noqa: E402

# layers, width, heads, context, batch; on CPU: rounds, steps per implementation per round, warmup.
# Many short rounds rather than a few long ones: on a shared machine a burst of load from
# elsewhere spoils a round or two, and the median over many rounds shrugs them off.
SIZES = {
    "S": dict(n_layer=4, n_embd=128, n_head=4, block_size=128, batch=16, rounds=15, steps=2,
              warmup=2),
    "M": dict(n_layer=6, n_embd=384, n_head=6, block_size=256, batch=8, rounds=7, steps=1,
              warmup=1),
    # The quick presets of C3 and C5 (studies/convergence/study.py), run by sweep workers on
    # one thread each: `--sizes Q --threads 1`.
    "Q": dict(n_layer=1, n_embd=48, n_head=2, block_size=64, batch=32, rounds=15, steps=10,
              warmup=5),
    # The standard preset of C3 and C5, the same way: `--sizes STD --threads 1`.
    "STD": dict(n_layer=1, n_embd=64, n_head=2, block_size=64, batch=32, rounds=15, steps=8,
                warmup=5),
}
IMPLS = ("actlab", "hf_gelu_new", "hf_gelu_pytorch_tanh", "reference")
EXTRA_IMPLS = ("actlab_gelu", "actlab_compiled")  # erf GELU; the compiled forward (default)
N_BATCHES = 4  # distinct batches, cycled: enough that no step sees the previous step's data


class Runner(Timed):
    """One implementation's training state and its private position in the shared batches."""

    def __init__(self, impl, size, batches, device, amp):
        self.name, self.batches, self.device, self.amp = impl, batches, device, amp
        self.loss_fn, self.model, self.opt = build(impl, size, device)
        self.params = list(self.model.parameters())
        self.step_idx, self.step_times = 0, []
        self.first_step_s = None  # the first step's wall time: for actlab_compiled, the compilation

    def warm(self, steps: int) -> None:
        for i in range(steps):
            t0 = time.perf_counter()
            self.step()
            if i == 0:
                sync(self.device)
                self.first_step_s = time.perf_counter() - t0

    def step(self) -> None:
        x, y = self.batches[self.step_idx % len(self.batches)]
        self.step_idx += 1
        with self.amp():
            loss = self.loss_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def first_loss(self) -> float:
        with torch.no_grad(), self.amp():  # eager: a no-grad call would compile a second graph
            return self.model_loss(*self.batches[0]).item()

    def model_loss(self, x, y):
        if self.name.startswith("actlab"):
            return self.model(x, y)[1]
        return self.loss_fn(x, y)


def linear_shapes(size: dict) -> list[tuple[int, int, int, int]]:
    """(count, rows, fan_in, fan_out) of every linear layer in one step: per block QKV,
    attention out, MLP up, MLP down; then the output head."""
    rows, C, L = size["batch"] * size["block_size"], size["n_embd"], size["n_layer"]
    return [(L, rows, C, 3 * C), (L, rows, C, C), (L, rows, C, 4 * C), (L, rows, 4 * C, C),
            (1, rows, C, VOCAB)]


def bench_size(name, size, impls, args, device, amp, gemm_dtype) -> dict:
    gen = torch.Generator().manual_seed(1234)
    B, T = size["batch"], size["block_size"]
    batches = []
    for _ in range(N_BATCHES):
        tok = torch.randint(0, VOCAB, (B, T + 1), generator=gen).to(device)
        batches.append((tok[:, :-1].contiguous(), tok[:, 1:].contiguous()))
    runners = [Runner(i, size, batches, device, amp) for i in impls]

    # A broken model must not post a fast number: the untrained loss is close to ln(vocab).
    first = {r.name: r.first_loss() for r in runners}
    for impl, loss in first.items():
        if not (math.isfinite(loss) and abs(loss - math.log(VOCAB)) < 0.5):
            raise SystemExit(f"{name}/{impl}: first-batch loss {loss:.3f}, expected about "
                             f"ln({VOCAB}) = {math.log(VOCAB):.3f}; not timing a broken model")

    fast = device.type == "cuda"  # milliseconds per step: more steps per block and more warmup
    steps = args.steps or (20 if fast else size["steps"])
    rounds = args.rounds or (5 if fast else size["rounds"])
    warmup = args.warmup if args.warmup is not None else (5 if fast else size["warmup"])
    for r in runners:
        r.warm(max(warmup, 2 if r.name == "actlab_compiled" else 0))  # compile + one settled step
    gemms = GemmSet(linear_shapes(size), device, gemm_dtype)
    gemms.step()  # warm
    timed: list[Timed] = [*runners, gemms]
    for rnd in range(rounds):
        for j in range(len(timed)):  # rotate the order so no implementation always goes first
            timed[(j + rnd) % len(timed)].timed_block(steps)

    n_params = GPT(actlab_config(size)).num_params(non_embedding=True)  # tied head in, wpe out
    flops_per_token = 6 * n_params + 12 * size["n_layer"] * size["n_embd"] * T
    rows = {r.name: dict(tokens_per_s=B * T / statistics.median(r.step_times),
                         ms_per_step=1e3 * statistics.median(r.step_times),
                         spread=spread(r.step_times), first_loss=first[r.name],
                         first_step_s=r.first_step_s) for r in runners}
    tps = {k: v["tokens_per_s"] for k, v in rows.items()}
    ours, hf, ref = tps.get("actlab"), tps.get("hf_gelu_pytorch_tanh"), tps.get("reference")
    ratios = {name: dict(vs_hf=tps[name] / hf if hf else None,
                         vs_reference=tps[name] / ref if ref else None)
              for name in ("actlab", "actlab_compiled", "actlab_gelu") if name in tps}
    return dict(
        config=dict(n_layer=size["n_layer"], n_embd=size["n_embd"], n_head=size["n_head"],
                    block_size=T, batch=B, vocab=VOCAB),
        rounds=rounds, steps_per_round=steps, warmup=warmup,
        n_params=n_params, flops_per_token=flops_per_token, tokens_per_s=tps,
        model_shaped_gflops_in_rounds=gemms.gflops(),
        ratio_vs_hf=ours / hf if ours and hf else None,
        ratio_vs_reference=ours / ref if ours and ref else None,
        ratios=ratios,
        per_impl=rows,
    )


def add_mfu(res: dict, square: float, shaped_peak: float) -> None:
    """Model FLOPs utilisation of every implementation (GFLOP/s achieved over GEMM GFLOP/s):
    mfu against the square GEMM peak; mfu_vs_model_shaped against the model-shaped GEMMs timed
    inside the rounds (median, the same load as the steps); mfu_vs_model_shaped_peak against
    their best-of-3 peak measured before and after the rounds."""
    shaped = res["model_shaped_gflops_in_rounds"]
    for d in res["per_impl"].values():
        achieved = d["tokens_per_s"] * res["flops_per_token"] / 1e9  # GFLOP/s
        d["mfu"], d["mfu_vs_model_shaped"] = achieved / square, achieved / shaped
        d["mfu_vs_model_shaped_peak"] = achieved / shaped_peak
    for key in ("mfu", "mfu_vs_model_shaped", "mfu_vs_model_shaped_peak"):
        for impl in ("actlab", "actlab_compiled"):
            if impl in res["per_impl"]:
                res[key if impl == "actlab" else f"{key}_compiled"] = res["per_impl"][impl][key]


def print_size(name: str, res: dict) -> None:
    c = res["config"]
    print(f"\nsize {name}: {c['n_layer']} layers, width {c['n_embd']}, {c['n_head']} heads, "
          f"context {c['block_size']}, batch {c['batch']}, vocab {c['vocab']}; "
          f"N = {res['n_params'] / 1e6:.2f}M, {res['flops_per_token'] / 1e6:.1f} MFLOP/token")
    print(f"  {res['rounds']} rounds x {res['steps_per_round']} timed steps per implementation "
          f"(after {res['warmup']} warmup); median step time over rounds")
    print(f"  model-shaped GEMMs timed in the rounds: {res['model_shaped_gflops_in_rounds']:.1f} GFLOP/s "
          f"(median)")
    print(f"  {'implementation':<22}{'tokens/s':>10}{'ms/step':>10}{'spread':>8}"
          f"{'MFU sq':>8}{'MFU shp':>9}{'shp pk':>8}{'loss0':>8}")
    for impl, d in res["per_impl"].items():
        print(f"  {impl:<22}{d['tokens_per_s']:>10,.0f}{d['ms_per_step']:>10.1f}{d['spread']:>8.1%}"
              f"{d['mfu']:>8.1%}{d['mfu_vs_model_shaped']:>9.1%}"
              f"{d['mfu_vs_model_shaped_peak']:>8.1%}{d['first_loss']:>8.3f}")
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for impl, r in res["ratios"].items():
        print(f"  {impl}: ratio_vs_hf = {fmt(r['vs_hf'])} (/ hf_gelu_pytorch_tanh)   "
              f"ratio_vs_reference = {fmt(r['vs_reference'])} (/ reference)")
    if "actlab_compiled" in res["per_impl"]:
        print(f"  actlab_compiled: first step (compilation) "
              f"{res['per_impl']['actlab_compiled']['first_step_s']:.1f} s")


def _fmt_load(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Training-step throughput (tokens/s) of actlab's GPT vs Hugging Face GPT-2 "
        "and a plain reference GPT, interleaved on identical batches, plus fp32/bf16 GEMM "
        "throughput (GFLOP/s) and MFU. Sizes: S = 4 layers x 128 wide, 4 heads, context 128, "
        "batch 16; M = 6 x 384, 6 heads, context 256, batch 8; Q (the quick presets of C3 and "
        "C5) = 1 x 48, 2 heads, context 64, batch 32; vocabulary 96 for all.",
        epilog="Columns: tokens/s = training tokens per second (median step time over rounds); "
        "ms/step; spread = interquartile range / median of the per-round step times; MFU sq / MFU shp / "
        "shp pk = achieved model FLOP/s over the square GEMM peak / the model-shaped GEMMs timed in "
        "the rounds / their peak; loss0 = untrained loss "
        "on the first batch (about ln 96 = 4.56). Ratios > 1 mean actlab is faster.")
    p.add_argument("--sizes", default="S,M", help="comma-separated sizes, from " + ", ".join(SIZES) + " (default: S,M)")
    p.add_argument("--steps", type=int, default=0,
                   help="timed training steps per implementation per round (default: 20 on CUDA; "
                   + ", ".join(f"{k}: {v['steps']}" for k, v in SIZES.items()) + " on CPU)")
    p.add_argument("--rounds", type=int, default=0,
                   help="interleaved rounds; step time is their median (default: 5 on CUDA; "
                   + ", ".join(f"{k}: {v['rounds']}" for k, v in SIZES.items()) + " on CPU)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps per implementation before the rounds (default: 5 on CUDA; "
                   + ", ".join(f"{k}: {v['warmup']}" for k, v in SIZES.items()) + " on CPU)")
    p.add_argument("--impls", default=",".join(IMPLS), help="comma-separated implementations, from "
                   f"{', '.join(IMPLS + EXTRA_IMPLS)} (default: {', '.join(IMPLS)})")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="leave out actlab_compiled (actlab with its forward through torch.compile, "
                   "how it trains runs of 2,000+ steps), whose compilation adds 5-25 s per size")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="(default: cpu)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="bfloat16 = autocast on CUDA, GEMM peaks then in bf16 (default: float32)")
    p.add_argument("--threads", type=int, default=default_threads(),
                   help="torch intra-op threads (default: the cores this process may use, "
                   f"here {default_threads()})")
    p.add_argument("--gemm-n", type=int, default=0,
                   help="side n of the n x n x n GEMM peak test (default: 2048 on CPU, 8192 on CUDA)")
    p.add_argument("--malloc", choices=("system", "actlab"), default="system",
                   help="system: the C library's allocator as it comes, as a plain PyTorch or "
                   "Hugging Face program runs; actlab: freed memory kept for reuse, as actlab's own "
                   "processes run (actlab.training.allocator). Either way it holds for every implementation "
                   "alike, being a process setting (default: system)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    args = p.parse_args(argv)
    args.sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    args.impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    if bad := [s for s in args.sizes if s not in SIZES]:
        p.error(f"unknown size(s) {bad}; choose from {', '.join(SIZES)}")
    if args.compile and "actlab_compiled" not in args.impls:
        args.impls.insert(args.impls.index("actlab") + 1 if "actlab" in args.impls else 0,
                          "actlab_compiled")
    if bad := [i for i in args.impls if i not in IMPLS + EXTRA_IMPLS]:
        p.error(f"unknown implementation(s) {bad}")
    if args.dtype == "bfloat16" and args.device != "cuda":
        p.error("--dtype bfloat16 needs --device cuda (CPU training stays float32)")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device")
    if args.threads < 1 or min(args.rounds, args.steps) < 0 or (args.warmup or 0) < 0:
        p.error("--threads must be >= 1; --rounds, --steps and --warmup >= 0")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.malloc == "actlab":
        allocator.keep_freed_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, for GEMM and model alike
    bf16 = args.dtype == "bfloat16"
    gemm_dtype = torch.bfloat16 if bf16 else torch.float32
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    impls = list(args.impls)
    try:
        import transformers  # noqa: F401
    except ImportError:
        print("transformers is not installed: skipping the hf_* implementations", file=sys.stderr)
        impls = [i for i in impls if not i.startswith("hf_")]

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    omp = {k: os.environ.get(k) for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if device.type == "cpu" and (load or 0) > 0.5:
        print(f"note: 1-minute load average is {load:.1f} before starting; other processes share "
              "the cores, so trust the ratios more than the absolute numbers (--threads 1 is steadier "
              "when the cores are oversubscribed)", file=sys.stderr)
    t_start = time.perf_counter()
    n = args.gemm_n or (8192 if device.type == "cuda" else 2048)

    def gemm_peaks() -> dict:
        shaped = {f"model_shaped_{s}": model_shaped_gflops(linear_shapes(SIZES[s]), device, gemm_dtype)
                  for s in args.sizes}
        return {"square": square_gemm_gflops(n, device, gemm_dtype), **shaped}

    # Measured before and after the training rounds; the better of the two is the peak, so a
    # burst of load from elsewhere during one measurement cannot inflate MFU.
    gemm = gemm_peaks()
    sizes = {name: bench_size(name, SIZES[name], impls, args, device, amp, gemm_dtype)
             for name in args.sizes}
    gemm = {k: max(v, w) for (k, v), w in zip(gemm.items(), gemm_peaks().values())}
    for name, res in sizes.items():
        add_mfu(res, gemm["square"], gemm[f"model_shaped_{name}"])
    result = {
        "device": device_name(device), "threads": args.threads, "torch": torch.__version__,
        "dtype": args.dtype, "load_avg_1min": load,
        "load_avg_1min_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "openmp_env": omp, "allocator": allocator.describe(), "gemm_gflops": gemm, "gemm_square_n": n,
        "sizes": sizes,
    }
    result["seconds"] = time.perf_counter() - t_start
    if args.json:
        print(json.dumps(result, indent=2))
        return result
    print(f"device {result['device']}, {args.threads} threads, torch {torch.__version__}, {args.dtype}; "
          f"1-min load average {_fmt_load(load)} before, {_fmt_load(result['load_avg_1min_after'])} after; "
          f"GOMP_SPINCOUNT={omp['GOMP_SPINCOUNT']}; allocator {result['allocator']}")
    shaped = ", ".join(f"{k.removeprefix('model_shaped_')} {v:.1f}" for k, v in gemm.items() if k.startswith("model_shaped"))
    print(f"GEMM {args.dtype}: square {n}^3 {gemm['square']:.1f} GFLOP/s (best of 10, before and "
          f"after the rounds); model-shaped linear layers (fwd + both bwd GEMMs): {shaped} GFLOP/s")
    print("MFU = (6 N + 12 L C T) FLOPs/token x tokens/s / GEMM throughput (attention counted "
          "non-causally); 'MFU sq' against the square GEMM peak, 'MFU shp' against the model-shaped "
          "GEMMs timed in the rounds (same load as the steps), 'shp pk' against their peak")
    for name, res in result["sizes"].items():
        print_size(name, res)
    print(f"\ntotal {result['seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()

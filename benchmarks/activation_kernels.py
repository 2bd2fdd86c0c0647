#!/usr/bin/env python
"""Forward + backward time of every registry activation against a copy of the same bytes, and the
memory a gated FFN block keeps for backward, eager against fused (src/actlab/activations/kernels.py).

Time. The floor is `y.copy_(x)` of N float32 values (read N, write N, into existing memory). Each
activation runs forward then backward with a fixed grad_out: plain ones on N values, gated ones on
N values in and N/2 out. Rounds are interleaved: in every round the copy is timed right before each
activation's variants, and the ratio is taken within the round, then the median over rounds, so a
shared machine's drift hits the copy and the activation alike. The `fresh clone` line is the price
of new memory: with glibc's default allocator every tensor over 32 MiB is a fresh mapping that
page-faults in on first touch, which no kernel can avoid. By default this script runs as every
actlab process does, with freed memory kept for reuse (actlab.training.allocator: what jemalloc or tcmalloc,
which PyTorch's CPU tuning guide recommends, also do); `--malloc system` leaves glibc as it is. Columns: eager (autograd through the module's ops), fused (the aten
kernels of kernels.py), compile (torch.compile'd kernels; compile s = the first call, compilation
included, in this process; a warm inductor cache under /tmp shortens it).

Memory. c_fc -> activation -> c_proj in training mode at width d and `--tokens` tokens: `kept` is
what autograd saves for backward (saved_tensors_hooks; each storage once, parameters excluded),
`peak` the most bytes alive at once during forward + backward among tensors made in the step
(CPU: a dispatch mode that follows every op's outputs until they are freed; CUDA:
torch.cuda.max_memory_allocated above the memory in use before the step), for one block and for
`--layers` residual blocks x + ffn(x) in a row. One block's peak is mostly its backward's transient
tensors, which fusion cannot remove; in a stack every block's kept tensors are alive at once, so
the peak ratio moves towards the kept ratio, as in a model.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _common then puts this checkout's src/ first
from _common import best_time, device_name, sync  # noqa: E402
from actlab.training import allocator  # noqa: E402
from actlab.activations import get, kernels, names  # noqa: E402

COLS = 4096  # last dimension of the timed tensors (gated: 2h = 4096 in, h = 2048 out)


def _time(fn, device, reps: int) -> float:
    """Best of `reps` synchronised calls, in ms (after one untimed call)."""
    return best_time(fn, device, reps) * 1e3


def _fwd_bwd(act: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    def step():
        x.grad = None  # the first backward then hands its tensor over: no accumulation pass
        act(x).backward(grad)
    return step


def time_activations(args, device) -> list[dict]:
    n = args.numel - args.numel % COLS
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n // COLS, COLS, generator=gen).to(device).requires_grad_()
    grad_full = torch.randn(n // COLS, COLS, generator=gen).to(device)
    grad_half = grad_full[:, : COLS // 2].contiguous()
    src, dst = x.detach().clone(), torch.empty_like(x)
    wanted = args.acts.split(",") if args.acts else names()
    rows = []
    for name in wanted:
        gated = name in names(gated=True)
        variants = {"eager": get(name)}
        if gated:
            variants["eager"].mode = "eager"
            variants["fused"] = get(name)
            variants["fused"].mode = "fused"
            if args.compile:
                variants["compile"] = get(name)
                variants["compile"].mode = "compile"
        grad = grad_half if gated else grad_full
        row = {"act": name, "gated": gated, "ms": {}, "ratio": {}}
        if "compile" in variants:  # the first call compiles: time it alone, once
            sync(device)
            t0 = time.perf_counter()
            _fwd_bwd(variants["compile"], x, grad)()
            sync(device)
            row["compile_s"] = time.perf_counter() - t0
        per_round = {k: [] for k in ("copy", *variants)}
        for _ in range(args.rounds):
            copy_ms = _time(lambda: dst.copy_(src), device, args.reps)
            per_round["copy"].append(copy_ms)
            for key, act in variants.items():
                per_round[key].append(_time(_fwd_bwd(act, x, grad), device, args.reps) / copy_ms)
        row["copy_ms"] = statistics.median(per_round["copy"])
        for key in variants:
            row["ratio"][key] = statistics.median(per_round[key])
            row["ms"][key] = row["ratio"][key] * row["copy_ms"]
        rows.append(row)
        if not args.json:
            print(_time_line(row), flush=True)
    return rows


def fresh_memory_ratio(args, device) -> float:
    """Time of a clone into new memory over a copy into existing memory, N values."""
    x = torch.randn(args.numel, device=device)
    y = torch.empty_like(x)
    ratios = [_time(x.clone, device, args.reps) / _time(lambda: y.copy_(x), device, args.reps)
              for _ in range(args.rounds)]
    return statistics.median(ratios)


class LiveBytes(TorchDispatchMode):
    """Peak bytes held by tensors that ops made under this mode, each storage counted once."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # After the op, its inputs are still referenced here, so inputs and output both count.
        self.live = {k: v for k, v in self.live.items() if not v[0].expired()}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                ref = StorageWeakRef(storage)
                self.live.setdefault(ref.cdata, (ref, storage.nbytes()))
        self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out


def ffn_memory(args, device) -> list[dict]:
    """Kept and peak bytes of one FFN block, and the peak of `--layers` residual blocks in a row
    (x + ffn(x), as in the model), where every block's kept tensors are alive at once."""
    d = args.width
    rows = []
    for name in names(gated=True):  # a plain FFN has one composition, no fused path
        hidden = round(4 * d * 2 / 3)  # nn.gpt.mlp_hidden's gated width
        torch.manual_seed(0)
        blocks = [(nn.Linear(d, 2 * hidden).to(device),
                   nn.Linear(hidden, d).to(device)) for _ in range(args.layers)]
        act = get(name)
        params = [p for block in blocks for layer in block for p in layer.parameters()]
        skip = {p.untyped_storage().data_ptr() for p in params}
        x = torch.randn(args.tokens, d, device=device, requires_grad=True)
        grad = torch.randn(args.tokens, d, device=device)
        row = {"act": name, "hidden": hidden, "kept": {}, "peak": {}, "peak_stack": {}}
        for mode in ("eager", "fused"):
            act.mode = mode
            for count, key in ((1, "peak"), (args.layers, "peak_stack")):
                for p in [x, *params]:
                    p.grad = None
                step = functools.partial(_ffn_step, act, blocks[:count], x, grad, mode)
                kept, row[key][mode] = _step_memory(step, skip, device)
                if count == 1:
                    row["kept"][mode] = kept
        for key in ("kept", "peak", "peak_stack"):
            row[f"{key}_ratio"] = row[key]["fused"] / row[key]["eager"]
        rows.append(row)
    return rows


def _ffn_step(act, blocks, x, grad, mode) -> None:
    for fc, proj in blocks:
        x = x + kernels.gated_linear(act, fc(x), proj, mode)
    x.backward(grad)


def _step_memory(step, skip: set[int], device) -> tuple[int, int]:
    """(bytes saved for backward, peak bytes alive) over one call of `step`."""
    kept: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            kept[ptr] = t.untyped_storage().nbytes()
        return t

    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with hooks:
            step()
        torch.cuda.synchronize(device)
        return sum(kept.values()), torch.cuda.max_memory_allocated(device) - base
    tracker = LiveBytes()
    with hooks, tracker:
        step()
    return sum(kept.values()), tracker.peak


def _time_line(row: dict) -> str:
    r, ms = row["ratio"], row["ms"]
    cells = [f"{row['act']:<17}", f"{row['copy_ms']:7.2f}"]
    for key in ("eager", "fused", "compile"):
        cells.append(f"{ms[key]:8.1f} {r[key]:6.2f}x" if key in r else f"{'-':>8} {'-':>7}")
    cells.append(f"{row['compile_s']:6.1f}" if "compile_s" in row else f"{'-':>6}")
    return "  ".join(cells)


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--numel", type=int, default=16 * 2**20,
                   help="values per activation input (default 16M = 64 MiB of float32)")
    p.add_argument("--acts", default="", help="comma-separated registry names (default: all)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median taken)")
    p.add_argument("--reps", type=int, default=3, help="timed calls per round (best taken)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="skip the torch.compile column (saves its compilation time)")
    p.add_argument("--width", type=int, default=384,
                   help="FFN block width d (hidden: 8d/3 gated, 4d plain)")
    p.add_argument("--tokens", type=int, default=2048, help="tokens in the memory measurement")
    p.add_argument("--layers", type=int, default=4, help="residual FFN blocks in the stacked peak")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--malloc", choices=("actlab", "system"), default="actlab",
                   help="actlab: keep freed memory for reuse, as actlab's processes do "
                        "(actlab.training.allocator); system: the C library's default (default: actlab)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead of the tables")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.malloc == "actlab":
        allocator.keep_freed_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = {
        "device": device_name(device), "torch": torch.__version__, "threads": args.threads,
        "numel": args.numel, "load_avg_1min": _load(),
        "malloc": allocator.describe(),
        "malloc_env": {k: os.environ.get(k, "") for k in ("GLIBC_TUNABLES", "LD_PRELOAD")},
    }
    if not args.json:
        print(f"{info['device']}, torch {info['torch']}, {args.threads} thread(s), "
              f"load {info['load_avg_1min']}, allocator {info['malloc']} {info['malloc_env']}")
    mode = get("swiglu").mode  # what ModelConfig.kernels defaults to
    probe = torch.empty(args.numel - args.numel % COLS, device=device)
    info["default_mode"] = {"mode": mode, "kernels": kernels._auto(probe) if mode == "auto" else mode}
    del probe
    info["fresh_clone_over_copy"] = fresh_memory_ratio(args, device)
    if not args.json:
        print(f"fresh clone of {args.numel:,} values = {info['fresh_clone_over_copy']:.2f}x a copy "
              "into existing memory")
        print(f"gated activations by default (ModelConfig.kernels = {mode}) run the "
              f"{info['default_mode']['kernels']} kernels at this size\n")
        print(f"{'activation':<17}  {'copy ms':>7}  {'eager ms':>8} {'ratio':>7}  "
              f"{'fused ms':>8} {'ratio':>7}  {'comp ms':>8} {'ratio':>7}  {'comp s':>6}")
    info["timing"] = time_activations(args, device)
    info["memory"] = ffn_memory(args, device)
    info["load_avg_1min_end"] = _load()
    if args.json:
        print(json.dumps(info, indent=2))
        return info
    print(f"\nFFN block c_fc -> act -> c_proj, d={args.width}, {args.tokens} tokens, MiB. "
          "kept: saved for backward; peak: most alive in forward + backward, one block and "
          f"{args.layers} residual blocks")
    print(f"{'activation':<10} {'hidden':>6}  {'kept eager':>10} {'fused':>6} {'ratio':>6}  "
          f"{'peak eager':>10} {'fused':>6} {'ratio':>6}  {f'x{args.layers} eager':>10} "
          f"{'fused':>6} {'ratio':>6}")
    mib = 2.0**20
    for row in info["memory"]:
        cells = [f"{row['act']:<10} {row['hidden']:>6}"]
        for key in ("kept", "peak", "peak_stack"):
            cells.append(f"{row[key]['eager'] / mib:10.1f} {row[key]['fused'] / mib:6.1f} "
                         f"{row[key + '_ratio']:6.3f}")
        print("  ".join(cells))
    print(f"\nload average at the end: {info['load_avg_1min_end']}")
    return info


if __name__ == "__main__":
    main()

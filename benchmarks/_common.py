"""Timing helpers shared by the benchmarks: device sync, best-of timing, GEMM throughput.

Every number here is wall-clock time around work that has been synchronised with the
device, so CUDA timings include the kernels and not just their launch. Importing this module
puts this checkout's src/ first on sys.path, so every benchmark times this checkout's actlab,
installed or not.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

_SRC = str(Path(__file__).resolve().parents[1] / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)
from actlab.training.env import cpu_model  # noqa: E402


def default_threads() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_model()})"


def best_time(fn: Callable[[], object], device: torch.device, reps: int) -> float:
    """Shortest of `reps` synchronised calls of fn, in seconds (after one untimed call)."""
    fn()
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def square_gemm_gflops(n: int, device: torch.device, dtype: torch.dtype, reps: int = 5) -> float:
    """Throughput of one n x n x n matmul in GFLOP/s (2 n^3 FLOPs), best of `reps`."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    return 2 * n**3 / best_time(lambda: a @ b, device, reps) / 1e9


def linear_gemms(rows: int, fan_in: int, fan_out: int, device, dtype) -> list[Callable[[], object]]:
    """The three GEMMs of one nn.Linear in a training step, with the layouts autograd uses:
    forward x W^T, input gradient dY W, weight gradient dY^T x. Each is 2*rows*fan_in*fan_out FLOPs."""
    x = torch.randn(rows, fan_in, device=device, dtype=dtype)
    w = torch.randn(fan_out, fan_in, device=device, dtype=dtype)
    dy = torch.randn(rows, fan_out, device=device, dtype=dtype)
    return [lambda: x @ w.t(), lambda: dy @ w, lambda: dy.t() @ x]


def model_shaped_gflops(
    shapes: list[tuple[int, int, int, int]], device: torch.device, dtype: torch.dtype, reps: int = 3
) -> float:
    """FLOP-weighted GEMM throughput over (count, rows, fan_in, fan_out) linear layers, in GFLOP/s:
    total FLOPs of one training step's linear layers / the sum of their best-of-`reps` times."""
    flops = seconds = 0.0
    for count, rows, fan_in, fan_out in shapes:
        for gemm in linear_gemms(rows, fan_in, fan_out, device, dtype):
            flops += count * 2.0 * rows * fan_in * fan_out
            seconds += count * best_time(gemm, device, reps)
    return flops / seconds / 1e9


class Timed:
    """Something timed in blocks of steps, one block per round of an interleaved benchmark."""

    name: str
    device: torch.device
    step_times: list[float]

    def step(self) -> None:
        raise NotImplementedError

    def timed_block(self, k: int) -> None:
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(k):
            self.step()
        sync(self.device)
        self.step_times.append((time.perf_counter() - t0) / k)


class GemmSet(Timed):
    """The GEMMs of one training step's linear layers, given as (count, rows, fan_in, fan_out)
    like model_shaped_gflops takes them: forward and both backward GEMMs, nothing else. Timed
    in turn with the models, so the MFU denominator sees the same load from elsewhere."""

    def __init__(self, shapes: list[tuple[int, int, int, int]], device: torch.device,
                 dtype: torch.dtype):
        self.name, self.device, self.step_times = "model-shaped GEMMs", device, []
        self.calls, self.flops = [], 0.0
        for count, rows, fan_in, fan_out in shapes:
            self.calls.append((count, linear_gemms(rows, fan_in, fan_out, device, dtype)))
            self.flops += count * 3 * 2.0 * rows * fan_in * fan_out

    def step(self) -> None:
        for count, gemms in self.calls:
            for _ in range(count):
                for gemm in gemms:
                    gemm()

    def gflops(self) -> float:
        return self.flops / statistics.median(self.step_times) / 1e9


def spread(values: list[float]) -> float:
    """Interquartile range / median: how much the middle half of the rounds disagree, as a
    fraction (a round spoilt by a burst of load elsewhere does not move it, as it would max - min)."""
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q3 - q1) / statistics.median(values)

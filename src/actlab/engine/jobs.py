"""One job where it runs: its report (JobReport), run_job, which every executor wraps around
the job function, and what the machine offers it (cores, visible GPUs)."""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch

from actlab.engine.store import to_json

@dataclass
class JobReport:
    """What came back from one job: its result as JSON text, or a one-line error."""

    result_json: str | None
    error: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    started: float | None = None
    threads: int | None = None
    host: str | None = None
    pid: int | None = None
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES as the job saw it, if set and not empty


def one_line(err: BaseException) -> str:
    """'ValueError: first line of the message', at most 300 characters."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def run_job(fn: Callable[[dict], dict], params: dict, threads: int | None) -> JobReport:
    """Run one job where it is executed (this process, a worker, a Ray task)."""
    if threads:
        torch.set_num_threads(threads)
    started, t0 = time.time(), time.perf_counter()
    text = error = tb = None
    try:
        result = fn(params)
        if not isinstance(result, dict):
            raise TypeError(f"a job must return a dict, {getattr(fn, '__name__', fn)} returned "
                            f"{type(result).__name__}")
        result.setdefault("seconds", time.perf_counter() - t0)
        text = to_json(result)  # here, so an unstorable result is this job's error
    except Exception as err:  # noqa: BLE001 - any failure of a job is recorded, not raised
        error, tb = one_line(err), traceback.format_exc()
    return JobReport(text, error, tb, time.perf_counter() - t0, started, torch.get_num_threads(),
                     socket.gethostname(), os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES") or None)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


def wants_gpu(device: str | None) -> bool:
    """Whether jobs on `device` train on CUDA in this process's view (None: TrainConfig's
    default, "auto", which picks CUDA where there is one)."""
    return device == "cuda" or (device in (None, "auto") and torch.cuda.is_available())


def visible_gpus() -> list[str]:
    """This machine's CUDA devices, named as CUDA_VISIBLE_DEVICES names them for a child
    process (the parent's own CUDA_VISIBLE_DEVICES entries when it has them)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [n.strip() for n in listed.split(",")] if listed else [str(i) for i in range(count)]
    return names[:count]


def local_gpus(device: str | None) -> list[str]:
    """The GPUs local workers are pinned to for jobs on `device`: all visible ones for CUDA
    jobs, none for CPU (or MPS) jobs."""
    return visible_gpus() if wants_gpu(device) else []

"""Where a sweep's jobs run: in this process, in local worker processes, or on a Ray cluster.

Every executor wraps the job function in the same `run_job`, which sets the job's torch
thread count, times it, turns an exception into a one-line error, and encodes the result as
JSON where the job ran. The parent receives these reports as jobs finish and is the only
process that writes to the store.

Identical numbers on every executor: a CPU float reduction can depend on how many threads
split it (benchmarks/executors.py: the same tiny GPT trained on 1 and on 2 threads ends with
different validation losses), so a job's thread count is fixed by the sweep (`threads`,
default 1), never by the executor or the number of workers. The same job then gives bitwise
the same result run serially, in 2 workers, or on a Ray node.

Why 1 thread per job and one worker per core by default: benchmarks/executors.py runs tiny
GPT training jobs (2 layers x 64, context 64) as a sweep, 2 workers x 1 thread against
1 worker x 2 threads, on a 2-core machine shared with other work (load average 6-14), so the
numbers are noisy. Wall time ratio 1x2 / 2x1 (> 1: 2x1 faster):
    default OpenMP settings:  14.9 (6 jobs x 60 steps), 12.7, 21.3, 11.1 (3 jobs x 30 steps)
    OMP_WAIT_POLICY=PASSIVE:  1.34 (6 jobs x 60 steps), 1.08 (6 jobs x 30 steps)
Small models gain little from a second thread inside one step (tiny GEMMs, per-op overhead),
so independent jobs side by side use the cores better. The large ratios come from OpenMP's
threads spinning at each barrier while the other thread is descheduled, which a loaded
machine makes the common case: in one process, the same job took 1.8 s on 1 thread and
36-74 s on 2, or 2.1 s with OMP_WAIT_POLICY=PASSIVE. With threads > 1 on a shared machine,
set OMP_WAIT_POLICY=PASSIVE before starting Python.

Local workers start with 'forkserver' (spawn where it does not exist): forking a process
that has used torch's thread pools can deadlock, while the fork server never runs torch, only
imports it once, so each later worker starts in a fraction of a second instead of the seconds a
spawned interpreter takes to import torch. Starting 2 workers and running a trivial job each
(benchmarks/executors.py, loaded machine): 6.3-7.4 s for the fork server's first start in a
process, 0.22-0.28 s once it runs, 19-20 s with spawn.

GPUs. Local workers: jobs that train on CUDA (device "cuda", or "auto" where CUDA exists) get
one worker per visible GPU, each pinned to its GPU by CUDA_VISIBLE_DEVICES, set in the worker
before anything there initialises CUDA (the fork server never does: torch refuses CUDA in a
process forked after it started); two processes on one GPU would each hold a CUDA context and
contend for it. CPU jobs get cores // threads workers on any machine. Ray: a task that
requests GPUs sees those (Ray sets CUDA_VISIBLE_DEVICES), so a GPU run must ask for one;
`ray_options` says how much, 1 GPU per run by default (see there). A task that requests none
sees every GPU of its node (Ray 2.48 and later leave CUDA_VISIBLE_DEVICES alone then), where
device "auto" would put runs on a GPU the scheduler never gave them: `ray_task` hides CUDA
from such a task, so it trains on the CPU it was given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from actlab.errors import ActlabError
from actlab.engine.jobs import (  # noqa: F401  (the executors' shared names, importable from here)
    JobReport, available_cores, local_gpus, one_line, run_job, visible_gpus, wants_gpu,
)
from actlab.engine.ray_cluster import _ray, check_resource, ray_options, ray_task  # noqa: F401
from actlab.engine.workers import _local

EXECUTORS = ("local", "serial", "ray")
DEFAULT_THREADS = 1


def plan(executor: str, workers: int | None, threads: int | None,
         device: str | None = None) -> tuple[int, int]:
    """(workers, threads per job) for a sweep of jobs on `device`; threads never depend on
    the executor. Default workers: one per GPU for CUDA jobs, one for MPS jobs (one device),
    cores // threads for CPU jobs."""
    if executor not in EXECUTORS:
        raise ActlabError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    threads = DEFAULT_THREADS if threads is None else int(threads)
    if threads < 1:
        raise ActlabError(f"threads must be >= 1, got {threads}")
    if executor == "serial":
        workers = 1
    elif workers is None:
        gpus = len(local_gpus(device))
        workers = gpus or (1 if device == "mps" else max(1, available_cores() // threads))
    if workers < 1:
        raise ActlabError(f"workers must be >= 1, got {workers}")
    return workers, threads


def execute(
    executor: str,
    fn: Callable[[dict], dict],
    tasks: Sequence[tuple[str, dict]],
    *,
    workers: int,
    threads: int,
    address: str | None = None,
    on_start: Callable[[str], None] = lambda run_id: None,
    gpus: Sequence[str] = (),
    device: str | None = None,
    gpus_per_run: float | None = None,
    cpus_per_run: float | None = None,
) -> Iterator[tuple[str, JobReport]]:
    """Yield (run_id, report) for every task, in the order they finish.

    gpus (local): the CUDA devices to pin workers to, worker k to gpus[k % len(gpus)] (see
    local_gpus); none: workers are not pinned. device, gpus_per_run, cpus_per_run (Ray): the
    jobs' device and each task's resource request (ray_options).

    `on_start(run_id)` is called just before a job is handed out; when it returns False
    (another process has claimed the run) the job is skipped and yields nothing. Closing the
    iterator early (an exception, KeyboardInterrupt) stops every job still running.
    """
    if executor == "serial":
        return _serial(fn, tasks, threads, on_start)
    if executor == "ray":
        return _ray(fn, tasks, workers, threads, address, on_start,
                    device=device, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run)
    return _local(fn, tasks, workers, threads, on_start, list(gpus))


# -- in this process ---------------------------------------------------------------------


def _serial(fn, tasks, threads, on_start):
    before = torch.get_num_threads()
    try:
        for run_id, params in tasks:
            if on_start(run_id) is not False:
                yield run_id, run_job(fn, params, threads)
    finally:
        torch.set_num_threads(before)  # the caller's setting, as it was

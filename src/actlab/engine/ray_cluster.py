"""The 'ray' executor: tasks on a Ray cluster, each asking for its CPUs and GPUs (see
engine/executors.py and ray_options)."""

from __future__ import annotations

import math
import signal
import threading
import os
from collections.abc import Callable


from actlab.errors import ActlabError
from actlab.engine.jobs import JobReport, one_line, run_job

# -- Ray ---------------------------------------------------------------------------------


def check_resource(name: str, value, zero_ok: bool) -> float:
    """A per-run share of a Ray resource (GPUs, CPUs), as Ray can schedule it: finite, not
    negative (nor zero unless `zero_ok`), at least 0.0001, and whole above 1 (a run cannot hold
    1.5 GPUs); anything else in one line."""
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise ActlabError(f"{name} must be a number, got {value!r}") from None
    bound = ">= 0" if zero_ok else "> 0"
    if not math.isfinite(share) or share < 0 or (share == 0 and not zero_ok):
        raise ActlabError(f"{name} must be a finite number {bound}, got {share:g}")
    if 0 < share < 1e-4:
        raise ActlabError(f"{name} {share:g}: Ray schedules shares of at least 0.0001")
    if share > 1 and share != int(share):
        raise ActlabError(f"{name} {share:g}: a share above 1 must be a whole number (a run on "
                          "1.5 GPUs would span two)")
    return share


def ray_options(threads: int, device: str | None, cluster_gpus: float,
                gpus_per_run: float | None = None, cpus_per_run: float | None = None) -> dict:
    """The resources each Ray task requests (ray.remote's options) for jobs on `device`.

    CPUs: `cpus_per_run`, default the job's thread count (what it uses). GPUs: `gpus_per_run`;
    by default 1 for jobs that may train on CUDA ("auto", "cuda", or unnamed) when the cluster
    has GPUs, else 0. One whole GPU is the local executor's rule (one run per GPU) and safe for
    any model: how many runs can share a GPU depends on their size, so a fraction (0.25: four
    runs per GPU) is the user's to choose. A request the cluster can never meet (GPUs on a
    cluster without any) and CUDA jobs given no GPU (they would fail once per run) are refused.
    With num_gpus > 0 Ray starts a fresh worker process per task (max_calls=1): a reused
    process would keep the GPU its first task initialised CUDA on.
    """
    cpus = float(threads) if cpus_per_run is None else check_resource("cpus_per_run", cpus_per_run, False)
    may_use_cuda = device in (None, "auto", "cuda")
    if gpus_per_run is None:
        gpus = 1.0 if may_use_cuda and cluster_gpus > 0 else 0.0
    else:
        gpus = check_resource("gpus_per_run", gpus_per_run, True)
    if gpus > 0 and cluster_gpus <= 0:
        raise ActlabError(f"the Ray cluster has no GPUs: runs requesting {gpus:g} GPU would wait "
                          "forever; use --gpus-per-run 0")
    if device == "cuda" and gpus == 0:
        raise ActlabError("runs on device 'cuda' need a GPU from Ray, but request none: set "
                          "--gpus-per-run (e.g. 1, or 0.25 to share a GPU)")
    return {"num_cpus": cpus, "num_gpus": gpus, "max_retries": 0}


def ray_task(fn: Callable[[dict], dict], params: dict, threads: int, hide_gpus: bool) -> JobReport:
    """run_job in a Ray task; `hide_gpus` (a task given no GPU) empties CUDA_VISIBLE_DEVICES
    first. The process keeps it: Ray runs no GPU task in it later (those get fresh processes,
    and Ray sets the variable for them)."""
    if hide_gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return run_job(fn, params, threads)


def _ray(fn, tasks, workers, threads, address, on_start, *, device=None, gpus_per_run=None,
         cpus_per_run=None):
    try:
        import ray
    except ImportError as err:
        raise ActlabError("executor 'ray' needs Ray: pip install 'actlab[ray]'") from err
    mine = [(run_id, params) for run_id, params in tasks if on_start(run_id) is not False]
    if not mine:
        return
    own = not ray.is_initialized()
    handlers = own_signal_handlers()
    if own:  # the cluster at `address`, or a local instance sized like the local executor
        if address:
            ray.init(address=address)
        else:
            per_run = threads if cpus_per_run is None else float(cpus_per_run)
            ray.init(num_cpus=max(1, math.ceil(workers * per_run)), include_dashboard=False)
    pending = {}
    try:
        options = ray_options(threads, device, ray.cluster_resources().get("GPU", 0),
                              gpus_per_run, cpus_per_run)
        remote = ray.remote(**options)(ray_task)  # here, not .options(): Ray sets max_calls then
        for run_id, params in mine:
            pending[remote.remote(fn, params, threads, options["num_gpus"] == 0)] = run_id
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                run_id = pending.pop(ref)
                try:
                    report = ray.get(ref)
                except ray.exceptions.RayError as err:  # the task's process died, or Ray failed
                    report = JobReport(None, f"ray task failed: {one_line(err)}")
                yield run_id, report
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if own:
            ray.shutdown()
            restore_signal_handlers(handlers)


def own_signal_handlers() -> dict:
    """This process's SIGINT and SIGTERM handlers (main thread only), to put back after Ray:
    ray.init replaces SIGTERM's with one that exits, and leaves it there after shutdown, so a
    later training run in this process would no longer end as "interrupted" on SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


def restore_signal_handlers(handlers: dict) -> None:
    for signum, handler in handlers.items():
        if handler is not None:
            signal.signal(signum, handler)

"""Run a grid of jobs once each, recording every result in the results folder's store.

A job is a JSON-able dict of parameters handed to a module-level function that returns a
JSON-able result. Its identity is the hash of (study, parameters): running the same grid
again returns stored results and computes only what is missing, so a killed sweep resumes.

The parent process alone writes the store, one transaction per job as it finishes, so a
sweep killed at any moment (SIGKILL included) loses only the jobs that were still running.
Each job is claimed in the store before it starts (actlab.engine.leases): a second sweep of
the same grid on the same folder skips the jobs a live sweep is running, computes the rest,
then waits for those to be stored; a job whose claimant died is computed again. A stored
result that fails its checksum is reported on stderr and recomputed.
Jobs run in local worker processes by default, in this process with executor="serial", or
on a Ray cluster with executor="ray"; each job gets the same number of torch threads on
every executor, so the numbers do not depend on where they were computed (see
actlab.engine.executors). Where the jobs train (their "device") decides how they are spread:
one local worker per GPU for CUDA jobs, a GPU per Ray task by default (jobs_device).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from actlab.training.env import environment
from actlab.engine.executors import JobReport, execute, local_gpus, plan
from actlab.engine.leases import Lease, alive
from actlab.engine.store import Store, from_json

STORE_NAME = "runs.sqlite"
POLL_S = 0.25  # how often a sweep looks at the jobs another sweep is running

# Where sweeps run when a caller does not say: `actlab audit --executor ray` sets this for
# the studies it runs, so that a study's code names no executor at all.
_DEFAULTS: contextvars.ContextVar[dict] = contextvars.ContextVar("actlab_sweep_defaults", default={})


@contextlib.contextmanager
def executor_defaults(executor: str | None = None, address: str | None = None,
                      workers: int | None = None, gpus_per_run: float | None = None,
                      cpus_per_run: float | None = None):
    """Within this block, run_grid calls that leave executor/address/workers/gpus_per_run/
    cpus_per_run unset use these."""
    given = {"executor": executor, "address": address, "workers": workers,
             "gpus_per_run": gpus_per_run, "cpus_per_run": cpus_per_run}
    token = _DEFAULTS.set({k: v for k, v in given.items() if v is not None})
    try:
        yield
    finally:
        _DEFAULTS.reset(token)


def job_id(study: str, params: dict) -> str:
    blob = json.dumps({"study": study, "params": params}, sort_keys=True, separators=(",", ":"),
                      default=_plain)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def jobs_device(jobs: Sequence[dict]) -> str:
    """Where a grid's jobs train: each job's "device" parameter (TrainConfig's key), or "auto",
    TrainConfig's default, for a job function that names none. A grid that mixes devices is
    spread for the most demanding one: cuda, then auto, then mps, then cpu."""
    named = {str(params.get("device", "auto")) for params in jobs}
    return next((d for d in ("cuda", "auto", "mps") if d in named), "cpu")


def _plain(obj):
    if hasattr(obj, "tolist"):  # numpy integers in a grid hash like Python ints
        return obj.tolist()
    raise TypeError(f"job parameters must be JSON-able, got {type(obj).__name__}")


def run_grid(
    study: str,
    jobs: Sequence[dict],
    fn: Callable[[dict], dict],
    out_dir: str | Path,
    *,
    progress: bool = True,
    executor: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    device: str | None = None,
    gpus_per_run: float | None = None,
    cpus_per_run: float | None = None,
) -> list[dict]:
    """Run `fn(params)` for every job not already finished; return all results in job order.

    Each returned result carries its "id" and "params" beside what `fn` returned, exactly as
    stored (decoded from the store's JSON), whether it was computed now or read back. A job
    that raised comes back as {"id", "params", "outcome": "error", "error": "Type: message",
    "seconds"}: it is recorded, the sweep goes on, and the next run of the sweep tries it
    again. A job that returns outcome "interrupted" (actlab.training.loop after Ctrl-C) is not
    recorded and stops the sweep with KeyboardInterrupt, as a Ctrl-C anywhere does; what
    finished is kept.

    executor: "local" (worker processes; the default unless `executor_defaults` says
    otherwise), "serial" (this process) or "ray" (`address` of an
    existing cluster, else a local instance of workers x threads CPUs). workers: jobs at once
    (default: one per visible GPU for CUDA jobs, each pinned to its GPU; cores // threads for
    CPU jobs). threads: torch threads per job (default 1, whatever the executor, so the
    numbers do not depend on it). device: where the jobs train (default: jobs_device, read
    from their parameters). gpus_per_run, cpus_per_run: each Ray task's request
    (engine.executors.ray_options; default 1 GPU for CUDA jobs on a cluster with GPUs, else 0,
    and `threads` CPUs). A job function
    must be importable by name (module level) for local workers, and should leave torch's
    thread count alone (TrainConfig.threads = 0).
    """
    defaults = _DEFAULTS.get()
    executor = executor or defaults.get("executor", "local")
    address = address or defaults.get("address")
    workers = workers or defaults.get("workers")
    gpus_per_run = defaults.get("gpus_per_run") if gpus_per_run is None else gpus_per_run
    cpus_per_run = defaults.get("cpus_per_run") if cpus_per_run is None else cpus_per_run
    device = device or jobs_device(jobs)
    workers, threads = plan(executor, workers, threads, device)
    gpus = local_gpus(device) if executor == "local" else []
    ids = [job_id(study, params) for params in jobs]
    store = Store(Path(out_dir) / STORE_NAME)
    try:
        with Lease(store) as lease:
            stored = store.results(ids, on_damaged=_recomputing)
            todo: dict[str, dict] = {}
            for rid, params in zip(ids, jobs):
                if rid not in stored:
                    todo.setdefault(rid, params)  # a job listed twice runs once
            if todo:
                env = {**environment(), "executor": executor, "workers": workers}
                env.pop("device")  # the parent's, not the jobs' (their config says where they ran)
                label = (f"{study} ({executor}, {workers} x {threads} thread{'s' * (threads > 1)}"
                         f"{f', {len(gpus)} GPU' + 's' * (len(gpus) > 1) if gpus else ''})")
                with _bar(progress, label, len(set(ids)), len(set(ids)) - len(todo)) as bar:
                    _compute(lease, study, todo, stored, fn, env, bar, executor=executor,
                             workers=workers, threads=threads, address=address, gpus=gpus,
                             device=device, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run)
    finally:
        store.close()
    return [{"id": rid, "params": params, **stored[rid]} for rid, params in zip(ids, jobs)]


def _compute(lease: Lease, study: str, todo: dict[str, dict], stored: dict, fn, env: dict,
             bar: _bar, **how) -> None:
    """Run the jobs of `todo` that no other sweep holds, then wait for those the others hold,
    and run again any whose holder died; every outcome goes into `stored`."""
    store = lease.store
    held: list[str] = []  # jobs skipped this round: another sweep holds them, or stored them

    def claim(rid: str) -> bool:
        if lease.claim(rid, study, todo[rid]) is None:
            return True
        held.append(rid)
        return False

    executor = how.pop("executor")
    pending = list(todo)
    while pending:
        held.clear()
        runs = execute(executor, fn, [(rid, todo[rid]) for rid in pending], on_start=claim, **how)
        with contextlib.closing(runs):
            for rid, report in runs:
                stored[rid] = _record(store, rid, report, env)
                bar.advance(error=report.error is not None)
        pending = _await(store, study, list(held), stored, bar)


def _recomputing(rid: str, problem: str) -> None:
    print(f"{problem}; recomputing it", file=sys.stderr, flush=True)


def _await(store: Store, study: str, waiting: list[str], stored: dict, bar: _bar) -> list[str]:
    """Wait for the jobs other sweeps hold; return those to claim again (their holder died, or
    their stored result failed its checksum) as soon as there are any, or [] once all are
    stored. What the others stored, results and errors alike, goes into `stored`."""
    told = False
    while waiting:
        settled, running = store.poll(waiting, on_damaged=_recomputing)
        for rid, result in settled.items():
            stored[rid] = result
            bar.advance(error=result.get("outcome") == "error")
        waiting = [rid for rid in waiting if rid not in settled]
        if any(rid not in running or not alive(*running[rid]) for rid in waiting):
            return waiting
        if waiting and not told:
            owners = ", ".join(sorted({running[rid][0] for rid in waiting}))
            print(f"{study}: waiting for {len(waiting)} run(s) that another sweep ({owners}) is "
                  f"computing in {store.path}", file=sys.stderr, flush=True)
            told = True
        if waiting:
            time.sleep(POLL_S)
    return []


def _record(store: Store, rid: str, report: JobReport, env: dict) -> dict:
    """Write one finished job to the store; return its result as stored."""
    run_env = {**env, "threads": report.threads, "host": report.host, "pid": report.pid}
    if report.gpus is not None:  # the GPU(s) the job could see; a CPU job's record is unchanged
        run_env["gpus"] = report.gpus
    if report.error is None:
        result = from_json(report.result_json)
        if result.get("outcome") == "interrupted":
            # train() turns Ctrl-C into this outcome; a cut-short run is not a result.
            raise KeyboardInterrupt
        return store.finish(rid, result, run_env, seconds=report.seconds, started=report.started)
    store.fail(rid, report.error, report.traceback, run_env, seconds=report.seconds,
               started=report.started)
    return {"outcome": "error", "error": report.error, "seconds": report.seconds}


class _bar:
    """A rich progress bar over a sweep (runs done / total, errors, time left), or nothing."""

    def __init__(self, enabled: bool, label: str, total: int, done: int):
        self.enabled, self.label, self.total, self.done = enabled, label, total, done
        self.errors = 0

    def __enter__(self) -> _bar:
        from rich.markup import escape
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[errors]}"), TimeElapsedColumn(), TextColumn("left"),
            TimeRemainingColumn(), disable=not self.enabled,
        )
        self.progress.__enter__()
        # the label is text, not markup: a name such as "C5 [moe]" must show as it is
        self.task = self.progress.add_task(escape(self.label), total=self.total, completed=self.done,
                                           errors="")
        return self

    def advance(self, error: bool) -> None:
        self.errors += error
        note = f"[red]{self.errors} failed" if self.errors else ""
        self.progress.update(self.task, advance=1, errors=note)

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

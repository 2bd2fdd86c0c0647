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
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import pickle
import signal
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from actlab.training import allocator
from actlab.errors import ActlabError
from actlab.engine.store import to_json

EXECUTORS = ("local", "serial", "ray")
DEFAULT_THREADS = 1


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
                     socket.gethostname(), os.getpid())


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


def plan(executor: str, workers: int | None, threads: int | None) -> tuple[int, int]:
    """(workers, threads per job) for a sweep; threads never depend on the executor."""
    if executor not in EXECUTORS:
        raise ActlabError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    threads = DEFAULT_THREADS if threads is None else int(threads)
    if threads < 1:
        raise ActlabError(f"threads must be >= 1, got {threads}")
    if executor == "serial":
        workers = 1
    elif workers is None:
        # One GPU: jobs in parallel processes would each hold a CUDA context and contend for it.
        workers = 1 if torch.cuda.is_available() else max(1, available_cores() // threads)
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
) -> Iterator[tuple[str, JobReport]]:
    """Yield (run_id, report) for every task, in the order they finish.

    `on_start(run_id)` is called just before a job is handed out; when it returns False
    (another process has claimed the run) the job is skipped and yields nothing. Closing the
    iterator early (an exception, KeyboardInterrupt) stops every job still running.
    """
    if executor == "serial":
        return _serial(fn, tasks, threads, on_start)
    if executor == "ray":
        return _ray(fn, tasks, workers, threads, address, on_start)
    return _local(fn, tasks, workers, threads, on_start)


# -- in this process ---------------------------------------------------------------------


def _serial(fn, tasks, threads, on_start):
    before = torch.get_num_threads()
    try:
        for run_id, params in tasks:
            if on_start(run_id) is not False:
                yield run_id, run_job(fn, params, threads)
    finally:
        torch.set_num_threads(before)  # the caller's setting, as it was


# -- local worker processes --------------------------------------------------------------

_READY = "ready"  # a worker's first message: it started and can take jobs


def _context():
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # The server imports these once; every worker forked from it starts with them loaded.
        # torch._dynamo: torch.optim imports it on the first optimizer (3-4 s here per process).
        ctx.set_forkserver_preload(["__main__", "actlab.engine.executors", "actlab.training.loop", "torch._dynamo"])
        return ctx
    return mp.get_context("spawn")


def _worker_main(conn, threads: int, lifeline, keep_memory: bool = False) -> None:
    # Ctrl-C reaches the whole process group: the parent alone handles it and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()
    torch.set_num_threads(threads)
    if keep_memory:  # the parent keeps freed memory (actlab.training.allocator): so do its workers
        allocator.keep_freed_memory()
    try:
        conn.send(_READY)  # started: a death from now on is a job's doing
    except OSError:  # the parent died while this worker started
        return
    while True:
        try:
            blob = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not blob:  # the parent's stop message
            return
        try:
            fn, params = pickle.loads(blob)
        except Exception as err:  # noqa: BLE001 - e.g. the job's module is not importable here
            report = JobReport(None, f"cannot load the job in a worker: {one_line(err)}",
                               traceback.format_exc())
        else:
            report = run_job(fn, params, threads)
        try:
            conn.send(report)
        except OSError:  # the parent died during the job: nobody to tell
            return


def _exit_with_parent(lifeline) -> None:
    """Block on a pipe only the parent can write to; its end closes when the parent dies
    (SIGKILL included), and then this worker exits instead of finishing an orphaned job."""
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(1)


class _Worker:
    def __init__(self, ctx, threads: int, lifeline):
        self.conn, child = ctx.Pipe()
        keep = allocator.describe() != "system"
        self.proc = ctx.Process(target=_worker_main, args=(child, threads, lifeline, keep),
                                daemon=True)
        self.proc.start()
        child.close()
        self.run_id: str | None = None
        self.ready = False

    def give(self, run_id: str, blob: bytes) -> None:
        self.run_id = run_id
        self.conn.send_bytes(blob)

    def collect(self) -> JobReport | None:
        """The report of the job just finished, None for the start-up message, or an error
        report if the worker died during the job."""
        try:
            if self.conn.poll():
                message = self.conn.recv()
                if message == _READY:
                    self.ready = True
                    return None
                return message
        except (EOFError, OSError):
            pass
        self.proc.join(5)
        code = self.proc.exitcode
        if not self.ready:  # no job ran: every worker would fail the same way
            raise ActlabError(
                f"a local worker process failed to start (exit code {code}; its error is printed "
                "above). A script that runs a sweep needs `if __name__ == '__main__':` around its "
                "top level, since workers import it.")
        why = " (killed: out of memory?)" if code == -signal.SIGKILL else ""
        return JobReport(None, f"worker process died with exit code {code}{why}")

    def stop(self, kill: bool) -> None:
        if not kill and self.proc.is_alive():
            try:
                self.conn.send_bytes(b"")
            except OSError:
                pass
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _local(fn, tasks, workers, threads, on_start):
    try:  # by reference: a worker imports the function's module (so no lambdas, no locals)
        pickle.dumps(fn)
    except Exception as err:
        raise ActlabError(f"local workers need a module-level job function: {one_line(err)}") from err
    queue = deque(tasks)

    def next_task() -> tuple[str, bytes] | None:
        """The next job this sweep runs (on_start may skip some), pickled for a worker."""
        while queue:
            run_id, params = queue.popleft()
            if on_start(run_id) is not False:
                return run_id, pickle.dumps((fn, params))
        return None

    task = next_task()
    if task is None:  # no worker is started for nothing
        return
    ctx = _context()
    lifeline, lifeline_w = ctx.Pipe(duplex=False)
    pool: list[_Worker] = []
    clean = False
    try:
        while task is not None:
            pool.append(_Worker(ctx, threads, lifeline))
            pool[-1].give(*task)
            task = next_task() if len(pool) < workers else None
        while busy := [w for w in pool if w.run_id is not None]:
            ready = set(mp.connection.wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
            for worker in busy:
                if worker.conn not in ready and worker.proc.sentinel not in ready:
                    continue
                report = worker.collect()
                if report is None:
                    continue
                run_id, worker.run_id = worker.run_id, None
                yield run_id, report
                task = next_task()
                if not worker.proc.is_alive():  # a dead worker is replaced while jobs remain
                    worker.stop(kill=True)
                    pool.remove(worker)
                    worker = _Worker(ctx, threads, lifeline) if task else None
                    if worker:
                        pool.append(worker)
                if task:
                    worker.give(*task)
        clean = True
    finally:
        for worker in pool:
            worker.stop(kill=not clean)
        lifeline_w.close()
        lifeline.close()


# -- Ray ---------------------------------------------------------------------------------


def _ray(fn, tasks, workers, threads, address, on_start):
    try:
        import ray
    except ImportError as err:
        raise ActlabError("executor 'ray' needs Ray: pip install 'actlab[ray]'") from err
    mine = [(run_id, params) for run_id, params in tasks if on_start(run_id) is not False]
    if not mine:
        return
    own = not ray.is_initialized()
    if own:  # a local instance sized like the local executor, or the cluster at `address`
        ray.init(address=address, num_cpus=None if address else workers * threads)
    remote = ray.remote(num_cpus=threads, max_retries=0)(run_job)
    pending = {}
    try:
        for run_id, params in mine:
            pending[remote.remote(fn, params, threads)] = run_id
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

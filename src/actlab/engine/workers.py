"""Local worker processes of the 'local' executor (see engine/executors.py for why the fork
server, one thread per job and one worker per GPU)."""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import multiprocessing.forkserver
import os
import pickle
import signal
import threading
import traceback
from collections import deque

import torch

from actlab.training import allocator
from actlab.errors import ActlabError
from actlab.engine.jobs import JobReport, one_line, run_job

# -- local worker processes --------------------------------------------------------------

_READY = "ready"  # a worker's first message: it started and can take jobs


def _forget_parents_fork_server() -> None:
    """In a child forked from a process whose fork server runs, that server is the parent's:
    the child cannot wait on it (ChildProcessError at its first worker). Forget it, so the
    child starts its own. multiprocessing keeps this state in private attributes of its one
    ForkServer instance (CPython 3.10-3.13); where they are missing there is nothing to reset."""
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    if getattr(server, "_forkserver_pid", None) is not None:
        for name in ("_forkserver_pid", "_forkserver_address", "_forkserver_alive_fd"):
            if hasattr(server, name):
                setattr(server, name, None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parents_fork_server)


def _context():
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # The server imports these once; every worker forked from it starts with them loaded.
        # torch._dynamo: torch.optim imports it on the first optimizer (3-4 s here per process).
        ctx.set_forkserver_preload(["__main__", "actlab.engine.workers", "actlab.training.loop", "torch._dynamo"])
        return ctx
    return mp.get_context("spawn")


def _worker_main(conn, threads: int, lifeline, keep_memory: bool = False,
                 gpu: str | None = None) -> None:
    if gpu is not None:  # first: CUDA reads it once, when this process initialises CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
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
    def __init__(self, ctx, threads: int, lifeline, gpu: str | None = None):
        self.conn, child = ctx.Pipe()
        keep = allocator.describe() != "system"
        self.gpu = gpu  # a replacement for this worker gets the same GPU
        self.proc = ctx.Process(target=_worker_main, args=(child, threads, lifeline, keep, gpu),
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


def _local(fn, tasks, workers, threads, on_start, gpus=()):
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
            gpu = gpus[len(pool) % len(gpus)] if gpus else None
            pool.append(_Worker(ctx, threads, lifeline, gpu))
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
                    worker = _Worker(ctx, threads, lifeline, worker.gpu) if task else None
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

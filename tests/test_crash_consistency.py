"""A sweep killed with SIGKILL at any moment resumes to exactly the results of one never killed.

Each trial starts a sweep in a child process, kills it after a delay drawn from a seeded
generator (so a failing trial can be replayed), resumes it here, and checks the store: every
run once, none left 'running', the file intact. Jobs are module-level (workers import them)
and log each call, which counts calls across processes.
"""

import multiprocessing as mp
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from actlab.engine.sweep import STORE_NAME, job_id, run_grid

CTX = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
N = 8


def crash_job(params: dict) -> dict:
    with open(params["log"], "a", encoding="utf-8") as fh:
        fh.write(f"{params['i']}\n")
    time.sleep(params["sleep"])
    i = params["i"]
    return {"value": i * 3 + 1, "seconds": params["sleep"],
            "history": [{"step": s, "loss": 4.0 - s / 4 - i / 100} for s in range(3)]}


def jobs(log: Path, sleep: float) -> list[dict]:
    return [{"i": i, "log": str(log), "sleep": sleep} for i in range(N)]


def _sweep(out: str, log: str, sleep: float, executor: str, workers: int) -> None:
    run_grid("crash", jobs(Path(log), sleep), crash_job, out, progress=False, executor=executor,
             workers=workers)


def calls(log: Path) -> Counter:
    return Counter(int(line) for line in log.read_text().split()) if log.exists() else Counter()


def _finished(path: Path) -> set[str]:
    if not path.exists():
        return set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in db.execute("SELECT id FROM runs WHERE status='finished'")}
    except sqlite3.OperationalError:  # killed before the tables were made
        return set()
    finally:
        db.close()


def kill_and_resume(tmp_path: Path, trial: int, kill_at: float, sleep: float, executor: str,
                    workers: int, uninterrupted: list[dict], after_first: bool) -> int:
    """One trial; returns how many runs had finished when the sweep was killed. The kill comes
    `kill_at` seconds after the start, or after the first run finished (past a slow start-up,
    such as the local executor's fork server)."""
    out, log = tmp_path / f"trial{trial}", tmp_path / f"trial{trial}.log"
    # A sweep with local workers starts from a fresh interpreter, as `actlab` does: a forked
    # copy of this test process would inherit the fork server that earlier tests started.
    ctx = mp.get_context("spawn") if executor == "local" else CTX
    proc = ctx.Process(target=_sweep, args=(str(out), str(log), sleep, executor, workers))
    proc.start()
    deadline = time.monotonic() + 120
    while after_first and not _finished(out / STORE_NAME) and proc.is_alive():
        assert time.monotonic() < deadline, "the sweep never finished a run"
        time.sleep(0.02)
    time.sleep(kill_at)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode in (-signal.SIGKILL, 0)  # 0: it had finished before the kill
    ids = {job_id("crash", p): p["i"] for p in jobs(log, sleep)}
    done_at_kill = {ids[rid] for rid in _finished(out / STORE_NAME)}

    resumed = run_grid("crash", jobs(log, sleep), crash_job, out, progress=False, executor="serial")
    assert resumed == uninterrupted  # every number, job order, ids and params
    count = calls(log)
    assert set(count) == set(range(N))
    assert all(count[i] == 1 for i in done_at_kill)  # nothing finished was computed again
    assert sum(count.values()) - N <= workers  # at most the jobs in flight ran twice

    db = sqlite3.connect(out / STORE_NAME)
    assert db.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    assert db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall() == [("finished", N)]
    assert db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 3 * N
    assert db.execute("SELECT COUNT(*) FROM runs WHERE checksum IS NULL").fetchone()[0] == 0
    db.close()
    return len(done_at_kill)


def _trials(tmp_path, n: int, seed: int, span: float, sleep: float, executor: str, workers: int,
            after_first: bool = False):
    uninterrupted = run_grid("crash", jobs(tmp_path / "fresh.log", sleep), crash_job,
                             tmp_path / "fresh", progress=False, executor="serial")
    for r in uninterrupted:  # the same jobs in another folder: only the log path differs
        r["params"] = {**r["params"], "log": None}
    rng = random.Random(seed)
    landed = []
    for trial in range(n):
        kill_at = rng.uniform(0.0, span)
        log = tmp_path / f"trial{trial}.log"
        expected = [{**r, "params": {**r["params"], "log": str(log)},
                     "id": job_id("crash", {**r["params"], "log": str(log)})} for r in uninterrupted]
        landed.append(kill_and_resume(tmp_path, trial, kill_at, sleep, executor, workers, expected,
                                      after_first))
    return landed


def test_sigkill_at_seeded_moments_then_resume(tmp_path):
    landed = _trials(tmp_path, n=3, seed=7, span=0.6, sleep=0.05, executor="serial", workers=1)
    assert len(landed) == 3


@pytest.mark.slow
def test_sigkill_at_many_moments_then_resume(tmp_path):
    landed = _trials(tmp_path, n=12, seed=11, span=0.7, sleep=0.05, executor="serial", workers=1)
    assert any(0 < k < N for k in landed), f"no kill landed mid-sweep: {landed}"


@pytest.mark.slow
def test_sigkill_of_a_sweep_with_local_workers_then_resume(tmp_path):
    landed = _trials(tmp_path, n=4, seed=5, span=1.2, sleep=0.3, executor="local", workers=2,
                     after_first=True)
    assert any(0 < k < N for k in landed), f"no kill landed mid-sweep: {landed}"

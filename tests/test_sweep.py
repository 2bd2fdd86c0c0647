"""Sweeps: every run once, resumable after SIGKILL, the same numbers on every executor.

The job functions live at module level so that worker processes (and a subprocess that is
killed mid-sweep) can import them; each call appends its job number to a log file, which
counts calls across processes.
"""

import functools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from actlab.config import ModelConfig, TrainConfig
from actlab.errors import ActlabError
from actlab.engine.store import Store
from actlab.engine.sweep import STORE_NAME, job_id, run_grid

HERE = Path(__file__).resolve().parent


def _log_call(params: dict) -> None:
    with open(params["log"], "a", encoding="utf-8") as fh:
        fh.write(f"{params['i']}\n")


def calls(log: Path) -> Counter:
    return Counter(int(line) for line in log.read_text().split()) if log.exists() else Counter()


def seeded(i: int) -> torch.Tensor:
    return torch.randn(16, 16, generator=torch.Generator().manual_seed(i))


def marked_job(params: dict) -> dict:
    """Deterministic: a seeded matmul, then an optional sleep; logs each call."""
    _log_call(params)
    x = seeded(params["i"])
    time.sleep(params.get("sleep", 0.0))
    if params.get("interrupt_at") == params["i"]:
        return {"outcome": "interrupted"}  # what actlab.training.loop returns after Ctrl-C
    return {"value": (x @ x).sum().item(), "history": [{"step": 0, "norm": x.norm().item()}]}


def failing_job(params: dict) -> dict:
    _log_call(params)
    if params["i"] == 1:
        raise ValueError("bad parameter\nsecond line of detail")
    if params["i"] == 2:
        raise ActlabError("unknown activation 'foo'")
    if params["i"] == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies as under the OOM killer
    return {"value": params["i"] * 2}


@functools.lru_cache(maxsize=None)
def _corpus():
    from actlab.data import prepare

    return prepare(None, "char", 16)


def gpt_job(params: dict) -> dict:
    """A tiny GPT trained for a few steps; threads left to the sweep (threads=0)."""
    from actlab.training.loop import train

    data = _corpus()
    model = ModelConfig(vocab_size=data.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32,
                        act=params["act"])
    cfg = TrainConfig(model=model, seed=params["seed"], steps=12, batch_size=8, eval_every=6,
                      eval_batches=2, warmup_steps=3, lr=3e-3, device="cpu")
    res = train(cfg, data=data, progress=False)
    return {"val_loss": res.val_loss, "history": res.history}


def untimed(results: list[dict]) -> list[dict]:
    """Results without their wall-clock parts (run seconds, per-step time stamps)."""
    def rows(history):
        return [{k: v for k, v in row.items() if k != "time_s"} for row in history]
    return [{k: rows(v) if k == "history" else v for k, v in r.items() if k != "seconds"}
            for r in results]


def test_finished_runs_are_skipped_and_read_back_exactly(tmp_path):
    log = tmp_path / "calls.txt"
    jobs = [{"i": i, "log": str(log)} for i in range(4)]
    torch.set_num_threads(2)  # the caller's setting, which the 1-thread jobs must not leak over
    first = run_grid("skip", jobs, marked_job, tmp_path, progress=False, executor="serial")
    assert calls(log) == Counter(range(4))
    again = run_grid("skip", jobs, marked_job, tmp_path, progress=False, executor="serial")
    assert calls(log) == Counter(range(4))  # nothing recomputed
    assert again == first  # seconds included: the first run returned what was stored
    x = seeded(2)
    assert first[2]["value"] == (x @ x).sum().item() and first[2]["params"] == jobs[2]
    assert torch.get_num_threads() == 2  # the serial executor restored the caller's threads

    # A 'running' row, as a killed process leaves it, is run again; a duplicate job runs once.
    extra = {"i": 4, "log": str(log)}
    with Store(tmp_path / STORE_NAME) as store:
        store.start(job_id("skip", extra), "skip", extra)
    grown = run_grid("skip", jobs + [extra, extra], marked_job, tmp_path, progress=False,
                     executor="serial")
    assert calls(log) == Counter(range(5))
    assert grown[:4] == first and grown[4] == grown[5] and grown[4]["id"] == job_id("skip", extra)
    with Store(tmp_path / STORE_NAME) as store:
        assert store.metrics(grown[4]["id"]) == [{"step": 0, "norm": grown[4]["history"][0]["norm"]}]


def test_job_errors_are_recorded_and_the_sweep_goes_on(tmp_path):
    log = tmp_path / "calls.txt"
    jobs = [{"i": i, "log": str(log)} for i in range(5)]
    res = run_grid("errors", jobs, failing_job, tmp_path, progress=False, workers=2)
    assert [r.get("value") for r in res] == [0, None, None, None, 8]
    assert [r.get("outcome") for r in res] == [None, "error", "error", "error", None]
    assert res[1]["error"] == "ValueError: bad parameter"
    assert res[2]["error"] == "ActlabError: unknown activation 'foo'"
    assert res[3]["error"].startswith("worker process died with exit code -9")
    with Store(tmp_path / STORE_NAME) as store:
        status = {r["config"]["i"]: (r["status"], r["outcome"]) for r in store.runs()}
        assert status == {0: ("finished", "completed"), 1: ("error", "error"), 2: ("error", "error"),
                          3: ("error", "error"), 4: ("finished", "completed")}
        assert "second line of detail" in store.db.execute(
            "SELECT traceback FROM runs WHERE id=?", (res[1]["id"],)).fetchone()[0]
    # The next run of the sweep retries the failed jobs only.
    run_grid("errors", jobs, failing_job, tmp_path, progress=False, workers=2)
    assert calls(log) == Counter({0: 1, 4: 1, 1: 2, 2: 2, 3: 2})


def test_serial_and_local_workers_give_identical_results(tmp_path):
    jobs = [{"act": act, "seed": seed} for act in ("gelu", "sigmoid") for seed in (0, 1)]
    serial = run_grid("same", jobs, gpt_job, tmp_path / "serial", progress=False,
                      executor="serial", threads=1)
    local = run_grid("same", jobs, gpt_job, tmp_path / "local", progress=False,
                     executor="local", workers=2, threads=1)
    assert untimed(local) == untimed(serial)  # bitwise: float == on every loss of every step
    losses = [r["val_loss"] for r in serial]
    assert len(set(losses)) == 4  # four distinct runs, not one result copied
    assert all(abs(v - 4.2) < 0.6 for v in losses)  # 12 steps from ln(81) = 4.39
    with Store(tmp_path / "local" / STORE_NAME) as store:
        envs = [r["env"] for r in store.runs()]
    assert {e["threads"] for e in envs} == {1} and len({e["pid"] for e in envs}) == 2


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            return any(line.startswith("State:") and "Z" in line for line in fh)
    except FileNotFoundError:
        return True


def _wait_dead(pids, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_dead(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_interrupt_keeps_what_finished_and_stops_the_workers(tmp_path):
    log = tmp_path / "calls.txt"
    # Job 2 returns at once while job 3 still sleeps, so nothing after 3 is ever handed out.
    jobs = [{"i": i, "log": str(log), "sleep": 0.0 if i == 2 else 0.3, "interrupt_at": 2}
            for i in range(6)]
    with pytest.raises(KeyboardInterrupt):
        run_grid("interrupt", jobs, marked_job, tmp_path, progress=False, workers=2)
    with Store(tmp_path / STORE_NAME) as store:
        runs = {r["config"]["i"]: r for r in store.runs()}
    finished = {i for i, r in runs.items() if r["status"] == "finished"}
    assert finished and finished <= {0, 1}  # kept; job 3 was still in flight
    assert all(runs[i]["result"]["value"] == (seeded(i) @ seeded(i)).sum().item() for i in finished)
    assert runs[2]["status"] == "running"  # an interrupted run is not a result
    assert set(calls(log)) <= {0, 1, 2, 3}  # nothing handed out after the interrupt
    if Path("/proc").exists():
        assert _wait_dead([r["env"]["pid"] for r in runs.values() if r["env"]])


def test_bad_arguments_fail_in_one_line(tmp_path):
    with pytest.raises(ActlabError, match="module-level"):
        run_grid("bad", [{"i": 0}], lambda p: p, tmp_path, progress=False)
    with pytest.raises(ActlabError, match="unknown executor"):
        run_grid("bad", [{"i": 0}], marked_job, tmp_path, progress=False, executor="dask")
    with pytest.raises(ActlabError, match="threads"):
        run_grid("bad", [{"i": 0}], marked_job, tmp_path, progress=False, threads=0)


KILLED_SWEEP = """
import sys
sys.path.insert(0, {here!r})
import test_sweep
test_sweep.kill_sweep({out!r}, {log!r})
"""


def kill_jobs(log: str) -> list[dict]:
    return [{"i": i, "log": log, "sleep": 0.4} for i in range(8)]


def kill_sweep(out: str, log: str) -> list[dict]:
    return run_grid("killed", kill_jobs(log), marked_job, out, progress=False, workers=2, threads=1)


def _finished(db_path: Path) -> set[str]:
    if not db_path.exists():
        return set()
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return {r[0] for r in db.execute("SELECT id FROM runs WHERE status='finished'")}
    except sqlite3.OperationalError:  # the table is being created
        return set()
    finally:
        db.close()


@pytest.mark.slow
def test_sigkill_mid_sweep_resumes_without_repeating_finished_runs(tmp_path):
    out, log = tmp_path / "killed", tmp_path / "calls.txt"
    script = KILLED_SWEEP.format(here=str(HERE), out=str(out), log=str(log))
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 180
    while len(_finished(out / STORE_NAME)) < 2 and proc.poll() is None:
        assert time.monotonic() < deadline, "the sweep never finished two runs"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_at_kill = _finished(out / STORE_NAME)
    ids = {job_id("killed", p): p["i"] for p in kill_jobs(str(log))}
    done_at_kill = {ids[rid] for rid in finished_at_kill}
    assert 2 <= len(done_at_kill) < 8, "the kill did not land mid-sweep"
    with Store(out / STORE_NAME) as store:
        worker_pids = {r["env"]["pid"] for r in store.runs() if r["env"]}
    if Path("/proc").exists():  # the workers noticed their parent's death and exited
        assert _wait_dead(worker_pids)

    assert subprocess.run([sys.executable, "-c", script], timeout=300).returncode == 0
    count = calls(log)
    assert set(count) == set(range(8)) and max(count.values()) <= 2
    assert all(count[i] == 1 for i in done_at_kill)  # nothing finished was recomputed
    repeated = {i for i, c in count.items() if c == 2}
    assert len(repeated) <= 2  # at most the two jobs that were in flight

    resumed = kill_sweep(str(out), str(log))  # a third run only reads the store
    assert calls(log) == count
    fresh = run_grid("killed", kill_jobs(str(log)), marked_job, tmp_path / "fresh",
                     progress=False, executor="serial", threads=1)
    assert untimed(resumed) == untimed(fresh)


def pid_job(params: dict) -> dict:
    """Writes its process id, then sleeps far longer than any test waits."""
    Path(params["pid_file"]).write_text(str(os.getpid()))
    time.sleep(params["sleep"])
    return {}


ORPHAN_SWEEP = """
import sys
sys.path.insert(0, {here!r})
import test_sweep
from actlab.engine.sweep import run_grid
run_grid("orphan", [{{"pid_file": {pid_file!r}, "sleep": 120}}], test_sweep.pid_job, {out!r},
         progress=False, workers=1)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="reads process states from /proc")
def test_a_worker_stops_when_its_parent_is_killed(tmp_path):
    pid_file = tmp_path / "worker.pid"
    script = ORPHAN_SWEEP.format(here=str(HERE), pid_file=str(pid_file), out=str(tmp_path / "o"))
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _wait_dead([worker], timeout=5.0)  # not after its 120 s job


@pytest.mark.slow
def test_ray_executor_matches_serial(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    # The Ray instance run_grid starts passes this environment on to its workers,
    # which must import this module to run its jobs.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    jobs = [{"act": "gelu", "seed": 0}, {"act": "sigmoid", "seed": 1}]
    before = signal.getsignal(signal.SIGTERM)
    on_ray = run_grid("ray", jobs, gpt_job, tmp_path / "ray", progress=False, executor="ray",
                      workers=2, threads=1)
    assert not ray.is_initialized()  # run_grid shut down the instance it started
    assert signal.getsignal(signal.SIGTERM) is before  # ray.init's SIGTERM handler is gone again
    serial = run_grid("ray", jobs, gpt_job, tmp_path / "serial", progress=False,
                      executor="serial", threads=1)
    assert untimed(on_ray) == untimed(serial)

"""Two sweeps on one results folder compute each run once; a dead sweep's claims are taken over.

Jobs live at module level (worker processes import them) and append their number to a log
file, one line per call, which counts calls across processes.
"""

import json
import multiprocessing as mp
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from actlab.engine import leases
from actlab.engine.leases import LEASE_S, Lease, alive
from actlab.engine.store import Store
from actlab.engine.sweep import STORE_NAME, job_id, run_grid

# fork starts a child in milliseconds; spawn (where fork does not exist) imports this module.
CTX = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
HOST = socket.gethostname()


def sleepy_job(params: dict) -> dict:
    with open(params["log"], "a", encoding="utf-8") as fh:
        fh.write(f"{params['i']}\n")
    time.sleep(params["sleep"])
    return {"value": params["i"] ** 2, "seconds": params["sleep"],
            "history": [{"step": 0, "loss": params["i"] + 0.5}]}


def calls(log: Path) -> Counter:
    return Counter(int(line) for line in log.read_text().split()) if log.exists() else Counter()


def grid(log: Path, n: int = 8, sleep: float = 0.2) -> list[dict]:
    return [{"i": i, "log": str(log), "sleep": sleep} for i in range(n)]


def _sweep_in_child(out: str, log: str, answer: str, go, executor: str, workers: int) -> None:
    go.wait(30)
    res = run_grid("both", grid(Path(log)), sleepy_job, out, progress=False, executor=executor,
                   workers=workers)
    Path(answer).write_text(json.dumps(res))


def _two_sweeps(tmp_path: Path, executor: str, workers: int) -> tuple[Counter, list, list]:
    out, log = tmp_path / "out", tmp_path / "calls.txt"
    go = CTX.Event()
    procs = [CTX.Process(target=_sweep_in_child,
                         args=(str(out), str(log), str(tmp_path / f"{name}.json"), go, executor, workers))
             for name in ("a", "b")]
    for proc in procs:
        proc.start()
    go.set()  # both start the sweep at the same moment
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    a, b = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("a", "b"))
    return calls(log), a, b


def test_two_sweeps_at_once_compute_every_run_once(tmp_path):
    count, a, b = _two_sweeps(tmp_path, "serial", 1)
    assert count == Counter(range(8))  # 8 runs, each computed once across both processes
    assert a == b  # both return every result, as stored
    assert [r["value"] for r in a] == [i * i for i in range(8)]
    with Store(tmp_path / "out" / STORE_NAME) as store:
        runs = store.runs()
    assert len(runs) == 8 and {r["status"] for r in runs} == {"finished"}
    assert len({r["env"]["pid"] for r in runs}) == 2  # both computed some


@pytest.mark.slow
def test_two_sweeps_with_local_workers_compute_every_run_once(tmp_path):
    count, a, b = _two_sweeps(tmp_path, "local", 2)
    assert count == Counter(range(8)) and a == b


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # exited and reaped: no process has this id now
    return proc.pid


def _claim_as(path: Path, run_id: str, owner: str, heartbeat: float | None = None) -> None:
    with Store(path) as store:
        assert store.claim(run_id, "both", {}, owner, lambda *_: True) is None
        if heartbeat is not None:
            store.db.execute("UPDATE runs SET heartbeat=? WHERE id=?", (heartbeat, run_id))


def test_claims_of_dead_or_silent_owners_are_taken_over(tmp_path, capsys):
    out, log = tmp_path / "out", tmp_path / "calls.txt"
    jobs = grid(log, n=4, sleep=0.0)
    ids = [job_id("both", p) for p in jobs]
    path = out / STORE_NAME
    _claim_as(path, ids[0], f"{HOST}:{_dead_pid()}:gone")  # its process exited
    # alive, but silent for longer than the lease (a reused pid, or a stalled process)
    _claim_as(path, ids[1], f"{HOST}:{os.getppid()}:stale", heartbeat=time.time() - LEASE_S - 1)
    _claim_as(path, ids[2], f"{HOST}:{os.getpid()}:ended")  # this process, a sweep no longer running
    with Store(path) as store:
        store.start(ids[3], "both", jobs[3])  # a row an older version left 'running', no owner
    res = run_grid("both", jobs, sleepy_job, out, progress=False, executor="serial")
    assert calls(log) == Counter(range(4)) and [r["value"] for r in res] == [0, 1, 4, 9]
    assert capsys.readouterr().err == ""  # nothing was waited for
    with Store(path) as store:
        rows = store.db.execute("SELECT status, owner FROM runs").fetchall()
    assert len(rows) == 4 and {status for status, _ in rows} == {"finished"}
    assert len({owner for _, owner in rows}) == 1  # all taken over by the one sweep


def test_a_live_claim_is_waited_for_and_its_result_used(tmp_path, capsys):
    out, log = tmp_path / "out", tmp_path / "calls.txt"
    jobs = grid(log, n=3, sleep=0.0)
    ids = [job_id("both", p) for p in jobs]
    path = out / STORE_NAME
    other = f"{HOST}:{os.getppid()}:other"  # a live process on this host
    _claim_as(path, ids[1], other)

    def the_other_finishes():
        time.sleep(0.8)
        with Store(path) as store:
            store.finish(ids[1], {"value": "from the other sweep"})

    helper = threading.Thread(target=the_other_finishes)
    helper.start()
    t0 = time.monotonic()
    res = run_grid("both", jobs, sleepy_job, out, progress=False, executor="serial")
    waited = time.monotonic() - t0
    helper.join()
    assert calls(log) == Counter({0: 1, 2: 1})  # job 1 was left to its owner
    assert [r["value"] for r in res] == [0, "from the other sweep", 4]
    assert waited >= 0.7
    assert capsys.readouterr().err == (f"both: waiting for 1 run(s) that another sweep ({other}) "
                                       f"is computing in {path}\n")


def test_a_claim_whose_owner_dies_while_waited_for_is_computed(tmp_path, capsys):
    out, log = tmp_path / "out", tmp_path / "calls.txt"
    jobs = grid(log, n=2, sleep=0.0)
    path = out / STORE_NAME
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _claim_as(path, job_id("both", jobs[0]), f"{HOST}:{holder.pid}:held")
        threading.Timer(0.8, holder.kill).start()
        res = run_grid("both", jobs, sleepy_job, out, progress=False, executor="serial")
    finally:
        holder.kill()
        holder.wait()
    assert calls(log) == Counter({0: 1, 1: 1}) and [r["value"] for r in res] == [0, 1]
    assert capsys.readouterr().err.startswith("both: waiting for 1 run(s) that another sweep")


def test_an_error_of_the_other_sweep_is_its_outcome(tmp_path):
    out, log = tmp_path / "out", tmp_path / "calls.txt"
    jobs = grid(log, n=2, sleep=0.0)
    rid = job_id("both", jobs[1])
    path = out / STORE_NAME
    _claim_as(path, rid, f"{HOST}:{os.getppid()}:other")

    def the_other_fails():
        time.sleep(0.5)
        with Store(path) as store:
            store.fail(rid, "ValueError: no", seconds=0.25)

    helper = threading.Thread(target=the_other_fails)
    helper.start()
    res = run_grid("both", jobs, sleepy_job, out, progress=False, executor="serial")
    helper.join()
    assert calls(log) == Counter({0: 1})  # not retried: the other sweep's attempt stands
    assert {k: res[1][k] for k in ("outcome", "error", "seconds")} == {
        "outcome": "error", "error": "ValueError: no", "seconds": 0.25}


def test_claim_is_exclusive_and_released(tmp_path):
    path = tmp_path / STORE_NAME
    with Store(path) as store:
        lease = Lease(store)
        with lease:
            assert lease.claim("r", "s", {"i": 1}) is None
            assert lease.claim("r", "s", {"i": 1}) is None  # its own claim: still its own
            assert store.claim("r", "s", {"i": 1}, "elsewhere:1:x", alive) == lease.owner
            assert alive(lease.owner, time.time())
        assert not alive(lease.owner, time.time())  # this process, that sweep has ended
        owner, beat = store.db.execute("SELECT owner, heartbeat FROM runs").fetchone()
        assert (owner, beat) == (None, None)  # released: the next sweep runs it at once
        assert store.claim("r", "s", {"i": 1}, "elsewhere:1:x", alive) is None
        store.finish("r", {"v": 1})
        assert store.claim("r", "s", {"i": 1}, "elsewhere:2:y", alive) == "finished"


def test_liveness_rules():
    now = time.time()
    assert not alive(None, now) and not alive("h:1:x", None)
    assert alive("another-host:1:x", now - LEASE_S + 5)  # another host: the lease alone
    assert not alive("another-host:1:x", now - LEASE_S - 5)
    assert alive(f"{HOST}:{os.getppid()}:x", now)
    assert not alive(f"{HOST}:{_dead_pid()}:x", now)
    assert not alive(f"{HOST}:{os.getpid()}:x", now)  # no such sweep in this process


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads process states from /proc")
def test_a_zombie_owner_is_dead():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while leases._pid_alive(proc.pid):  # until it has exited (not yet reaped)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, 0)  # the pid still exists (a zombie) ...
    assert not alive(f"{HOST}:{proc.pid}:z", time.time())  # ... but owns nothing
    proc.wait()


def test_the_heartbeat_keeps_claims_fresh(tmp_path):
    path = tmp_path / STORE_NAME
    with Store(path) as store:
        with Lease(store, interval=0.1) as lease:
            lease.claim("r", "s", {})
            store.db.execute("UPDATE runs SET heartbeat=0")
            deadline = time.monotonic() + 10
            while store.db.execute("SELECT heartbeat FROM runs").fetchone()[0] == 0:
                assert time.monotonic() < deadline, "the heartbeat never came"
                time.sleep(0.05)
            assert alive(lease.owner, store.db.execute("SELECT heartbeat FROM runs").fetchone()[0])


def test_a_store_locked_by_another_writer_waits(tmp_path):
    """A second process holding the write lock for a moment delays a claim, never fails it."""
    path = tmp_path / STORE_NAME
    with Store(path) as store:
        blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.5, lambda: blocker.execute("COMMIT"))
        release.start()
        t0 = time.monotonic()
        assert store.claim("r", "s", {}, f"{HOST}:1:x", alive) is None
        assert time.monotonic() - t0 >= 0.4
        release.join()
        blocker.close()


def _open_and_claim(path: str, go, answers) -> None:
    go.wait(30)
    try:
        with Store(path) as store:
            store.claim(f"r{os.getpid()}", "s", {}, f"{HOST}:{os.getpid()}:x", alive)
        answers.put("ok")
    except Exception as err:  # noqa: BLE001 - reported to the test
        answers.put(f"{type(err).__name__}: {err}")


def test_sweeps_opening_a_new_folder_at_once_all_get_in(tmp_path):
    """Switching a new file to WAL needs it alone, and SQLite does not wait for that."""
    answers = []
    for rep in range(30):
        go, queue = CTX.Event(), CTX.Queue()
        path = tmp_path / f"rep{rep}" / STORE_NAME
        procs = [CTX.Process(target=_open_and_claim, args=(str(path), go, queue)) for _ in range(4)]
        for proc in procs:
            proc.start()
        go.set()
        answers += [queue.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(30)
        with Store(path) as store:
            assert len(store.runs()) == 4
    assert answers == ["ok"] * 120

"""A damaged results store is named, never used: a broken file on open, a changed row on read.

The job function lives at module level and logs each call to a file, which counts calls.
"""

import json
import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from actlab.errors import EnvironmentFailure, StoreError
from actlab.engine.integrity import guarded
from actlab.engine.store import Store
from actlab.engine.sweep import STORE_NAME, job_id, run_grid


def loss_job(params: dict) -> dict:
    """A deterministic 'training run': a final loss and a short loss curve."""
    with open(params["log"], "a", encoding="utf-8") as fh:
        fh.write(f"{params['lr']}\n")
    final = 2.0 + 0.125 * params["lr"]
    return {"final_loss": final, "seconds": 0.5,
            "history": [{"step": s, "loss": final + 1.0 / (s + 1)} for s in range(3)]}


def calls(log: Path) -> Counter:
    return Counter(int(line) for line in log.read_text().split()) if log.exists() else Counter()


def damaged_line(path: Path, what: str) -> str:
    return (f"results store {path} is damaged ({what}): move it aside (mv {path} {path}.damaged) "
            "and run again; finished runs in it will be recomputed")


def filled_store(path: Path, runs: int = 12, steps: int = 40) -> None:
    """A finished store of `runs` runs with 2 metrics per step (runs x steps x 2 metric rows)."""
    with Store(path) as store:
        for i in range(runs):
            rid = f"run{i:02d}"
            store.start(rid, "fill", {"i": i})
            history = [{"step": s, "loss": 3.0 - s / steps + i, "lr": 1e-3 * s} for s in range(steps)]
            store.finish(rid, {"final_loss": history[-1]["loss"], "history": history})
    assert not Path(f"{path}-wal").exists()  # closed: every page is in the main file


def test_a_garbage_header_is_named_with_what_to_do(tmp_path):
    path = tmp_path / STORE_NAME
    filled_store(path, runs=3, steps=5)
    with open(path, "r+b") as fh:
        fh.write(b"\xa5" * 100)  # the 100-byte header: magic string, page size, counters
    with pytest.raises(StoreError) as err:
        Store(path)
    assert str(err.value) == damaged_line(path, "file is not a database")
    # A study handed that folder stops with the same line, before it computes anything.
    log = tmp_path / "calls.txt"
    with pytest.raises(StoreError) as err:
        run_grid("lr", [{"lr": 1, "log": str(log)}], loss_job, tmp_path, progress=False,
                 executor="serial")
    assert str(err.value) == damaged_line(path, "file is not a database")
    assert calls(log) == Counter()


def test_a_text_file_in_place_of_the_store_is_named(tmp_path):
    path = tmp_path / STORE_NAME
    path.write_text("these are not the runs you are looking for\n" * 200)
    with pytest.raises(StoreError) as err:
        Store(path)
    assert str(err.value) == damaged_line(path, "file is not a database")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("where", ["page", "straddling"])
def test_a_page_of_random_bytes_inside_the_file_is_caught_on_open(tmp_path, seed, where):
    path = tmp_path / STORE_NAME
    filled_store(path)  # 12 runs x 40 steps x 2 metrics = 960 metric rows
    size, page = path.stat().st_size, 4096
    pages = size // page
    assert pages >= 10
    rng = random.Random(seed)
    offset = rng.randrange(2, pages - 1) * page + (0 if where == "page" else page // 2)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(rng.randbytes(page))
    db = sqlite3.connect(path)
    try:  # really damaged: SQLite's full check finds it too, or cannot even run
        assert db.execute("PRAGMA integrity_check").fetchone()[0] != "ok"
    except sqlite3.DatabaseError as err:
        assert str(err) == "database disk image is malformed"
    db.close()
    with pytest.raises(StoreError) as err:
        Store(path)
    text = str(err.value)
    assert text.startswith(f"results store {path} is damaged (") and "\n" not in text
    assert text.endswith(f"move it aside (mv {path} {path}.damaged) and run again; "
                         "finished runs in it will be recomputed")


def _edit_result(path: Path, run_id: str, old: str, new: str) -> None:
    """Change the stored result text of one run directly, leaving its checksum as it was."""
    db = sqlite3.connect(path)
    (text,) = db.execute("SELECT result FROM runs WHERE id=?", (run_id,)).fetchone()
    assert text.count(old) == 1
    db.execute("UPDATE runs SET result=? WHERE id=?", (text.replace(old, new), run_id))
    db.commit()
    db.close()


def test_one_changed_digit_in_a_stored_loss_is_recomputed_with_a_warning(tmp_path, capsys):
    log = tmp_path / "calls.txt"
    jobs = [{"lr": lr, "log": str(log)} for lr in (1, 2, 3, 4)]
    first = run_grid("lr", jobs, loss_job, tmp_path, progress=False, executor="serial")
    assert calls(log) == Counter({1: 1, 2: 1, 3: 1, 4: 1})
    assert first[2]["final_loss"] == 2.375
    capsys.readouterr()

    path, target = tmp_path / STORE_NAME, job_id("lr", jobs[2])
    _edit_result(path, target, '"final_loss": 2.375', '"final_loss": 2.275')
    # A report reading the runs stops at the damaged row, naming it.
    with Store(path) as store, pytest.raises(StoreError) as err:
        store.runs()
    assert str(err.value) == (f"stored result of run {target} in {path} does not match its "
                              f"checksum; run its study again to recompute it, or move the file "
                              f"aside (mv {path} {path}.damaged) to recompute every run")

    again = run_grid("lr", jobs, loss_job, tmp_path, progress=False, executor="serial")
    assert calls(log) == Counter({1: 1, 2: 1, 3: 2, 4: 1})  # that run alone, once
    assert capsys.readouterr().err == (f"stored result of run {target} in {path} does not match "
                                       "its checksum; recomputing it\n")
    assert again == first and again[2]["final_loss"] == 2.375  # the true value, not 2.275
    with Store(path) as store:  # the row was overwritten whole: it reads back and checks out
        assert {r["id"]: r["result"]["final_loss"] for r in store.runs()}[target] == 2.375
        assert len(store.metrics(target)) == 3
    run_grid("lr", jobs, loss_job, tmp_path, progress=False, executor="serial")
    assert calls(log) == Counter({1: 1, 2: 1, 3: 2, 4: 1}) and capsys.readouterr().err == ""


def test_a_changed_config_or_outcome_fails_the_checksum_too(tmp_path, capsys):
    log = tmp_path / "calls.txt"
    jobs = [{"lr": lr, "log": str(log)} for lr in (1, 2)]
    run_grid("lr", jobs, loss_job, tmp_path, progress=False, executor="serial")
    path = tmp_path / STORE_NAME
    ids = [job_id("lr", p) for p in jobs]
    db = sqlite3.connect(path)
    db.execute("UPDATE runs SET config=replace(config, '\"lr\": 1', '\"lr\": 7') WHERE id=?", (ids[0],))
    db.execute("UPDATE runs SET outcome='diverged' WHERE id=?", (ids[1],))
    db.commit()
    db.close()
    capsys.readouterr()
    run_grid("lr", jobs, loss_job, tmp_path, progress=False, executor="serial")
    assert calls(log) == Counter({1: 2, 2: 2})
    assert capsys.readouterr().err.splitlines() == [
        f"stored result of run {rid} in {path} does not match its checksum; recomputing it"
        for rid in sorted(ids)  # the store lists its rows by id
    ]
    with Store(path) as store:
        assert {r["id"]: (r["config"]["lr"], r["outcome"]) for r in store.runs()} == {
            ids[0]: (1, "completed"), ids[1]: (2, "completed")}


OLD_SCHEMA = ("CREATE TABLE runs (id TEXT PRIMARY KEY, study TEXT NOT NULL, config TEXT NOT NULL, "
              "seed INTEGER, status TEXT NOT NULL, outcome TEXT, env TEXT, started REAL, "
              "finished REAL, seconds REAL, result TEXT, error TEXT, traceback TEXT)")


def test_an_old_store_without_checksums_opens_and_its_rows_are_used(tmp_path, capsys):
    log = tmp_path / "calls.txt"
    jobs = [{"lr": lr, "log": str(log)} for lr in (1, 2, 3)]
    path = tmp_path / STORE_NAME
    db = sqlite3.connect(path)
    db.execute(OLD_SCHEMA)
    for params in jobs[:2]:  # finished by an older version: no checksum column at all
        result = {"final_loss": 9.0 + params["lr"], "seconds": 0.1}
        db.execute("INSERT INTO runs (id, study, config, status, outcome, result) VALUES "
                   "(?, 'lr', ?, 'finished', 'completed', ?)",
                   (job_id("lr", params), json.dumps(params, sort_keys=True), json.dumps(result)))
    db.commit()
    db.close()

    res = run_grid("lr", jobs, loss_job, tmp_path, progress=False, executor="serial")
    assert calls(log) == Counter({3: 1})  # the two stored runs were used, not recomputed
    assert [r["final_loss"] for r in res] == [10.0, 11.0, 2.375]
    assert capsys.readouterr().err == ""
    db = sqlite3.connect(path)
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert {"checksum", "owner", "heartbeat"} <= columns
    sums = dict(db.execute("SELECT id, checksum FROM runs"))
    db.close()
    assert sums[job_id("lr", jobs[0])] is None and len(sums[job_id("lr", jobs[2])]) == 64
    with Store(path) as store:
        assert {r["config"]["lr"]: r["result"]["final_loss"] for r in store.runs()} == {
            1: 10.0, 2: 11.0, 3: 2.375}


def test_an_old_row_that_does_not_decode_is_recomputed(tmp_path, capsys):
    log = tmp_path / "calls.txt"
    params = {"lr": 5, "log": str(log)}
    path = tmp_path / STORE_NAME
    db = sqlite3.connect(path)
    db.execute(OLD_SCHEMA)
    db.execute("INSERT INTO runs (id, study, config, status, result) VALUES (?, 'lr', ?, 'finished', ?)",
               (job_id("lr", params), json.dumps(params), '{"final_loss": 2.6'))
    db.commit()
    db.close()
    (res,) = run_grid("lr", [params], loss_job, tmp_path, progress=False, executor="serial")
    assert calls(log) == Counter({5: 1}) and res["final_loss"] == 2.625
    err = capsys.readouterr().err
    assert err.startswith(f"stored result of run {job_id('lr', params)} in {path} cannot be decoded (")
    assert err.endswith("); recomputing it\n") and err.count("\n") == 1


def test_sqlite_errors_become_one_line_of_the_right_kind(tmp_path):
    class Holder:
        path = tmp_path / STORE_NAME

        @guarded
        def fail(self, cls, message, code):
            err = cls(message)
            err.sqlite_errorcode = code
            raise err

    holder = Holder()
    with pytest.raises(StoreError) as err:
        holder.fail(sqlite3.DatabaseError, "database disk image is malformed", 11)
    assert str(err.value) == damaged_line(holder.path, "database disk image is malformed")
    with pytest.raises(EnvironmentFailure) as err:
        holder.fail(sqlite3.OperationalError, "database or disk is full", 13)
    assert str(err.value) == (
        f"cannot use results store {holder.path} (database or disk is full): the runs finished so "
        "far are kept in it; free disk space or fix its permissions, then run the same command "
        "again to resume")
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # busy: neither damage nor disk
        holder.fail(sqlite3.OperationalError, "database is locked", 5)


def test_metrics_that_differ_from_their_result_are_named(tmp_path):
    path = tmp_path / STORE_NAME
    filled_store(path, runs=2, steps=3)
    db = sqlite3.connect(path)
    db.execute("UPDATE metrics SET value=value + 1 WHERE run_id='run01' AND step=2 AND name='loss'")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.metrics("run00")[2] == {"step": 2, "loss": 3.0 - 2 / 3, "lr": 0.002}
        with pytest.raises(StoreError) as err:
            store.metrics("run01")
    assert str(err.value) == damaged_line(path, "the metrics of run run01 differ from its result")


def test_a_schema_that_lost_a_column_is_named(tmp_path):
    path = tmp_path / STORE_NAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, study TEXT NOT NULL, config TEXT NOT NULL, "
               "seed INTEGER, status TEXT NOT NULL, outcame TEXT, env TEXT, started REAL, "
               "finished REAL, seconds REAL, result TEXT)")  # one flipped bit: outcome -> outcame
    db.commit()
    db.close()
    with pytest.raises(StoreError) as err:
        Store(path)
    assert str(err.value) == damaged_line(path, "table runs has no column outcome")

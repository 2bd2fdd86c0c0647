"""The results store: what is written reads back exactly, NaN and infinities included."""

import math
import sqlite3

import numpy as np
import pytest

from actlab.engine.store import Store


def run_status(store: Store, run_id: str) -> str | None:
    return {run["id"]: run["status"] for run in store.runs()}.get(run_id)


def finished_ids(store: Store) -> set[str]:
    return {run["id"] for run in store.runs() if run["status"] == "finished"}


def stored_result(store: Store, run_id: str) -> dict | None:
    return store.results([run_id]).get(run_id)


def test_round_trip_with_nan_inf_and_numpy(tmp_path):
    path = tmp_path / "runs.sqlite"
    result = {
        "outcome": "diverged", "val_loss": float("nan"), "best": float("inf"), "low": -float("inf"),
        "np_float": np.float32(0.5), "np_int": np.int64(7), "curve": np.array([1.0, 2.5]),
        "history": [{"step": 0, "train_loss": 2.0, "lr": 0.1},
                    {"step": 1, "train_loss": float("nan"), "grad_norm": float("inf"), "ok": True}],
    }
    with Store(path) as store:
        store.start("a", "demo", {"seed": 3, "act": "relu"})
        assert run_status(store, "a") == "running"
        assert finished_ids(store) == set() and stored_result(store, "a") is None
        returned = store.finish("a", result, env={"torch": "x"}, seconds=1.5)

    with Store(path) as store:  # reopened: everything came from disk
        got = stored_result(store, "a")
        assert got == returned
        assert math.isnan(got["val_loss"]) and got["best"] == math.inf and got["low"] == -math.inf
        assert got["np_float"] == 0.5 and got["np_int"] == 7 and got["curve"] == [1.0, 2.5]
        assert finished_ids(store) == {"a"}
        (run,) = store.runs("demo")
        assert (run["status"], run["outcome"], run["seconds"]) == ("finished", "diverged", 1.5)
        assert run["config"] == {"act": "relu", "seed": 3} and run["env"] == {"torch": "x"}
        assert store.runs("other") == []
        m = store.metrics("a")
        # booleans are not metrics; NaN is stored as NULL and read back as NaN, inf as inf
        assert [sorted(r) for r in m] == [["lr", "step", "train_loss"], ["grad_norm", "step", "train_loss"]]
        assert m[0] == {"step": 0, "train_loss": 2.0, "lr": 0.1}
        assert math.isnan(m[1]["train_loss"]) and m[1]["grad_norm"] == math.inf
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT seed FROM runs").fetchone()[0] == 3


def test_finish_replaces_metrics_and_needs_a_started_run(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        with pytest.raises(KeyError):
            store.finish("never", {"x": 1})
        store.start("a", "demo", {})
        store.finish("a", {"history": [{"step": 0, "loss": 1.0}, {"step": 1, "loss": 0.5}]})
        store.finish("a", {"history": [{"step": 0, "loss": 3.0}]})
        assert store.metrics("a") == [{"step": 0, "loss": 3.0}]
        with pytest.raises(TypeError):  # nothing half-written when a result cannot be stored
            store.finish("a", {"bad": object()})
        assert stored_result(store, "a") == {"history": [{"step": 0, "loss": 3.0}]}


def test_error_runs_and_restarts(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        store.start("e", "demo", {"i": 1})
        store.fail("e", "ValueError: boom", "Traceback ...", seconds=0.1)
        assert run_status(store, "e") == "error" and stored_result(store, "e") is None
        assert finished_ids(store) == set()
        (run,) = store.runs()
        assert (run["outcome"], run["error"]) == ("error", "ValueError: boom")
        store.start("e", "demo", {"i": 1})  # a retry clears the error
        (run,) = store.runs()
        assert (run["status"], run["outcome"], run["error"]) == ("running", None, None)
        store.finish("e", {"v": 2})
        store.start("e", "demo", {"i": 1})  # a finished run is never reset by a start
        store.fail("e", "ValueError: late")  # nor overwritten by a failure
        assert run_status(store, "e") == "finished" and stored_result(store, "e") == {"v": 2}


def test_old_file_gains_new_columns(tmp_path):
    path = tmp_path / "runs.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, study TEXT NOT NULL, config TEXT NOT NULL, "
               "seed INTEGER, status TEXT NOT NULL, outcome TEXT, env TEXT, started REAL, "
               "finished REAL, seconds REAL, result TEXT)")
    db.execute("INSERT INTO runs (id, study, config, status, result) VALUES "
               "('old', 's', '{}', 'finished', '{\"v\": 1}')")
    db.commit()
    db.close()
    with Store(path) as store:
        assert stored_result(store, "old") == {"v": 1}
        store.start("new", "s", {})
        store.fail("new", "RuntimeError: x")
        assert {r["id"]: r["error"] for r in store.runs()} == {"old": None, "new": "RuntimeError: x"}

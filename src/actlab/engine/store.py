"""One SQLite file per results folder: every run's config, outcome, environment and metrics.

A run's identity is the hash of what defines it (study + parameters), so asking for the
same run again finds it instead of recomputing it. Each finished run is written in one
transaction in WAL mode, so a process killed at any moment (SIGKILL included) leaves a
consistent file: a run is either recorded with its result and metrics, or it is not.

Results are stored as JSON text that keeps NaN and ±Infinity (Python's `json` writes and
reads them as the bare tokens `NaN`/`Infinity`): a diverged run's NaN loss reads back as
NaN, not as null. SQLite's own json functions accept those tokens from 3.42 on (JSON5).
The metrics table stores ±inf as REAL and NaN as NULL (SQLite has no NaN); NULL reads back
as NaN.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import time
from pathlib import Path

# Run status: running (started, not recorded: its process may have died, so it is run
# again), finished (result stored, never recomputed), error (the job raised: retried by
# the next sweep, since the cause may be the code or the machine rather than the params).
RUNNING, FINISHED, ERROR = "running", "finished", "error"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER,
    status TEXT NOT NULL,          -- running | finished | error
    outcome TEXT,                  -- completed | diverged | error | ... (set by the run)
    env TEXT,
    started REAL,
    finished REAL,
    seconds REAL,
    result TEXT,
    error TEXT,                    -- one line: "ValueError: message"
    traceback TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, name)
);
"""
# Columns added after the first files were written: opened files gain them (ALTER TABLE).
_LATER_COLUMNS = {"error": "TEXT", "traceback": "TEXT"}


def _builtin(obj):
    """json `default`: numpy/torch scalars and arrays, dataclasses and paths become plain data."""
    if hasattr(obj, "tolist"):  # numpy and torch: scalars give numbers, arrays nested lists
        return obj.tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def to_json(obj) -> str:
    """Encode a result or config; raises TypeError for what cannot be stored."""
    return json.dumps(obj, sort_keys=True, allow_nan=True, default=_builtin)


def from_json(text: str | None):
    return None if text is None else json.loads(text)


def _metric_rows(run_id: str, history: list) -> list[tuple]:
    rows = []
    for row in history:
        for name, value in row.items():
            if name == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            rows.append((run_id, int(row["step"]), name, None if math.isnan(value) else float(value)))
    return rows


class Store:
    """The runs and metrics of one results folder. One process writes (the sweep's parent);
    readers and a second writer wait up to `timeout` seconds for a lock instead of failing."""

    def __init__(self, path: str | Path, timeout: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; finish() opens its own.
        self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (only power loss can drop the last commit).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        have = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
        for name, kind in _LATER_COLUMNS.items():
            if name not in have:
                self.db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------

    def start(self, run_id: str, study: str, config: dict) -> None:
        """Mark a run as started. A row left 'running' or 'error' by an earlier process is
        replaced; a finished one is kept (a finished run is never overwritten by a start)."""
        self.db.execute(
            "INSERT INTO runs (id, study, config, seed, status, started) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET status=excluded.status, started=excluded.started, "
            "outcome=NULL, error=NULL, traceback=NULL WHERE runs.status != 'finished'",
            (run_id, study, to_json(config), _seed(config), RUNNING, time.time()),
        )

    def finish(self, run_id: str, result: dict, env: dict | None = None,
               seconds: float | None = None, started: float | None = None) -> dict:
        """Record the result and its metrics in one transaction: all of it or none of it.

        Returns the result as stored (decoded from its JSON), so the caller holds exactly what
        a later read gives back. The run must have been start()ed.
        """
        text = to_json(result)
        stored = from_json(text)
        rows = _metric_rows(run_id, stored.get("history") or [])
        seconds = stored.get("seconds") if seconds is None else seconds
        with self._transaction():
            updated = self.db.execute(
                "UPDATE runs SET status=?, outcome=?, env=?, finished=?, seconds=?, result=?, "
                "started=COALESCE(?, started), error=NULL, traceback=NULL WHERE id=?",
                (FINISHED, stored.get("outcome", "completed"), to_json(env or {}), time.time(),
                 seconds, text, started, run_id),
            ).rowcount
            if updated != 1:
                raise KeyError(f"run {run_id} was never started in {self.path}")
            self.db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            self.db.executemany("INSERT INTO metrics VALUES (?,?,?,?)", rows)
        return stored

    def fail(self, run_id: str, error: str, traceback: str | None = None, env: dict | None = None,
             seconds: float | None = None, started: float | None = None) -> None:
        """Record that a run raised: outcome 'error' with its one-line message."""
        self.db.execute(
            "UPDATE runs SET status=?, outcome='error', env=?, finished=?, seconds=?, "
            "started=COALESCE(?, started), error=?, traceback=? WHERE id=? AND status != 'finished'",
            (ERROR, to_json(env or {}), time.time(), seconds, started, error, traceback, run_id),
        )

    def _transaction(self):
        db = self.db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")  # take the write lock now, not half-way through

            def __exit__(self, exc_type, *_):
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()

    # -- reading ---------------------------------------------------------------------

    def results(self, run_ids) -> dict[str, dict]:
        """Stored results of the finished runs among run_ids, by id."""
        wanted = set(run_ids)
        rows = self.db.execute("SELECT id, result FROM runs WHERE status=?", (FINISHED,))
        return {rid: from_json(text) for rid, text in rows if rid in wanted}

    def runs(self, study: str | None = None) -> list[dict]:
        query = ("SELECT id, study, config, status, outcome, env, started, finished, seconds, result, "
                 "error FROM runs")
        args: tuple = ()
        if study is not None:
            query += " WHERE study = ?"
            args = (study,)
        out = []
        for rid, st, cfg, status, outcome, env, started, finished, secs, result, error in self.db.execute(
            query + " ORDER BY started, id", args
        ):
            out.append({
                "id": rid, "study": st, "config": from_json(cfg), "status": status,
                "outcome": outcome, "env": from_json(env), "started": started, "finished": finished,
                "seconds": secs, "result": from_json(result), "error": error,
            })
        return out

    def metrics(self, run_id: str) -> list[dict]:
        """Metric rows of one run as [{"step": s, name: value, ...}] sorted by step."""
        by_step: dict[int, dict] = {}
        for step, name, value in self.db.execute(
            "SELECT step, name, value FROM metrics WHERE run_id=? ORDER BY step, name", (run_id,)
        ):
            by_step.setdefault(step, {"step": step})[name] = float("nan") if value is None else value
        return [by_step[s] for s in sorted(by_step)]


def _seed(config) -> int | None:
    seed = config.get("seed") if isinstance(config, dict) else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None

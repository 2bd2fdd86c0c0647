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

A damaged file never feeds an analysis silently. Opening a store runs `PRAGMA quick_check`
(the b-tree structure of every page), so a file that is not a database or whose pages were
overwritten raises StoreError naming the file and what to do. Damage inside a row's text,
which the structure check cannot see, is caught by the row's checksum: the sha256 of its id,
config, outcome and result text, written in the same transaction as the result and checked
on every read (actlab.engine.integrity). Finished rows with no checksum (written before the
column existed) are accepted as they are.

Several processes may use one file at once (two sweeps on one folder): a sweep claims a run
in the store before it starts it (`claim`, atomic under BEGIN IMMEDIATE), naming itself as
the row's owner with a heartbeat time; actlab.engine.leases decides whether an owner is
still alive and keeps the heartbeat fresh.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from actlab.errors import StoreError
from actlab.engine.integrity import checksum, damaged, guarded, problem, unusable

# Run status: running (claimed and started, not recorded: run again once its owner is gone),
# finished (result stored, never recomputed unless its checksum fails), error (the job raised:
# retried by the next sweep, since the cause may be the code or the machine rather than the
# params).
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
    traceback TEXT,
    checksum TEXT,                 -- sha256 of id, config, outcome, result (finished rows)
    owner TEXT,                    -- host:pid:token of the sweep running it
    heartbeat REAL                 -- when that owner last said it is alive
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, name)
);
"""
# Every column a store must have once opened; one missing means a damaged schema.
_COLUMNS = {"runs": ("id", "study", "config", "seed", "status", "outcome", "env", "started",
                     "finished", "seconds", "result", "error", "traceback", "checksum", "owner",
                     "heartbeat"),
            "metrics": ("run_id", "step", "name", "value")}
# Columns added after the first files were written: opened files gain them (ALTER TABLE).
_LATER_COLUMNS = {"error": "TEXT", "traceback": "TEXT", "checksum": "TEXT", "owner": "TEXT",
                  "heartbeat": "REAL"}


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
    """The runs and metrics of one results folder. Writers take turns (one transaction at a
    time); readers and writers wait up to `timeout` seconds for a lock instead of failing.
    check=False skips the structure check on open (a second connection of a process that
    has just checked the file)."""

    def __init__(self, path: str | Path, timeout: float = 60.0, check: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db: sqlite3.Connection | None = None
        try:
            self._open(timeout, check)
        except BaseException:
            if self.db is not None:
                self.db.close()
            raise

    @guarded
    def _open(self, timeout: float, check: bool) -> None:
        # isolation_level=None: no implicit transactions; finish() and claim() open their own.
        self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        if check:
            found = [row[0] for row in self.db.execute("PRAGMA quick_check")]
            if found != ["ok"]:
                raise StoreError(damaged(self.path, " ".join(found[:2])[:160]))
        self._wal(timeout)
        # NORMAL in WAL mode survives a killed process (only power loss can drop the last commit).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        if self._missing_columns():
            with self._transaction():  # two processes opening one old file: one adds them
                for name in self._missing_columns():
                    self.db.execute(f"ALTER TABLE runs ADD COLUMN {name} {_LATER_COLUMNS[name]}")
        for table, names in _COLUMNS.items():
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            for name in names:
                if name not in have:
                    raise StoreError(damaged(self.path, f"table {table} has no column {name}"))

    def _wal(self, timeout: float) -> None:
        """Switch to WAL mode, waiting for other processes: the switch needs the file to
        itself and SQLite does not wait for it (two sweeps opening a new folder at once)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _missing_columns(self) -> list[str]:
        have = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
        return [name for name in _LATER_COLUMNS if name not in have]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------

    @guarded
    def start(self, run_id: str, study: str, config: dict) -> None:
        """Mark a run as started with no owner, as a process of an older version (or one
        killed before it recorded anything) leaves it: the next sweep runs it again. A row
        left 'running' or 'error' is replaced; a finished one is kept."""
        self.db.execute(
            "INSERT INTO runs (id, study, config, seed, status, started) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET status=excluded.status, started=excluded.started, "
            "outcome=NULL, error=NULL, traceback=NULL, owner=NULL, heartbeat=NULL "
            "WHERE runs.status != 'finished'",
            (run_id, study, to_json(config), _seed(config), RUNNING, time.time()),
        )

    @guarded
    def claim(self, run_id: str, study: str, config: dict, owner: str,
              alive: Callable[[str | None, float | None], bool]) -> str | None:
        """Take a run for `owner` before starting it; None if taken, else who holds it.

        Taken when the run has no row, failed, is 'running' for an owner that `alive(owner,
        heartbeat)` says is gone, or is finished with a result that fails its checksum (then
        its row is rewritten). Not taken when it is finished and intact ("finished") or
        running for a live owner (that owner's name). Read and write happen under one write
        lock, so of two processes claiming one run, exactly one gets it. Also refreshes the
        heartbeat of every run `owner` holds.
        """
        text, now = to_json(config), time.time()
        with self._transaction():
            row = self.db.execute(
                "SELECT status, owner, heartbeat, config, outcome, result, env, checksum FROM runs "
                "WHERE id=?", (run_id,)).fetchone()
            if row is not None:
                status, holder, beat, cfg, outcome, result, env, digest = row
                if status == FINISHED and not problem(self.path, run_id, cfg, outcome, result, env, digest):
                    return FINISHED
                if status == RUNNING and holder != owner and alive(holder, beat):
                    return holder
            self.db.execute(
                "INSERT INTO runs (id, study, config, seed, status, started, owner, heartbeat) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET study=excluded.study, "
                "config=excluded.config, seed=excluded.seed, status=excluded.status, "
                "started=excluded.started, owner=excluded.owner, heartbeat=excluded.heartbeat, "
                "outcome=NULL, result=NULL, checksum=NULL, error=NULL, traceback=NULL",
                (run_id, study, text, _seed(config), RUNNING, now, owner, now),
            )
            self.db.execute("UPDATE runs SET heartbeat=? WHERE owner=? AND status=?",
                            (now, owner, RUNNING))
        return None

    @guarded
    def touch(self, owner: str) -> None:
        """Say that `owner` is alive: refresh the heartbeat of the runs it holds."""
        self.db.execute("UPDATE runs SET heartbeat=? WHERE owner=? AND status=?",
                        (time.time(), owner, RUNNING))

    @guarded
    def release(self, owner: str) -> None:
        """Give up `owner`'s unfinished runs (a sweep stopping early): they stay 'running',
        with no owner, so the next sweep runs them again at once."""
        self.db.execute("UPDATE runs SET owner=NULL, heartbeat=NULL WHERE owner=? AND status=?",
                        (owner, RUNNING))

    @guarded
    def finish(self, run_id: str, result: dict, env: dict | None = None,
               seconds: float | None = None, started: float | None = None) -> dict:
        """Record the result, its checksum and its metrics in one transaction: all or none.

        Returns the result as stored (decoded from its JSON), so the caller holds exactly what
        a later read gives back. The run must have been claimed or start()ed.
        """
        text = to_json(result)
        stored = from_json(text)
        rows = _metric_rows(run_id, stored.get("history") or [])
        seconds = stored.get("seconds") if seconds is None else seconds
        outcome, env_text = stored.get("outcome", "completed"), to_json(env or {})
        with self._transaction():
            row = self.db.execute("SELECT config FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"run {run_id} was never started in {self.path}")
            self.db.execute(
                "UPDATE runs SET status=?, outcome=?, env=?, finished=?, seconds=?, result=?, "
                "checksum=?, started=COALESCE(?, started), error=NULL, traceback=NULL WHERE id=?",
                (FINISHED, outcome, env_text, time.time(), seconds, text,
                 checksum(run_id, row[0], outcome, text, env_text), started, run_id),
            )
            self.db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            self.db.executemany("INSERT INTO metrics VALUES (?,?,?,?)", rows)
        return stored

    @guarded
    def fail(self, run_id: str, error: str, traceback: str | None = None, env: dict | None = None,
             seconds: float | None = None, started: float | None = None) -> None:
        """Record that a run raised: outcome 'error' with its one-line message."""
        self.db.execute(
            "UPDATE runs SET status=?, outcome='error', env=?, finished=?, seconds=?, "
            "started=COALESCE(?, started), error=?, traceback=? WHERE id=? AND status != 'finished'",
            (ERROR, to_json(env or {}), time.time(), seconds, started, error, traceback, run_id),
        )

    def _transaction(self, write: bool = True):
        db = self.db

        class _Tx:
            def __enter__(self):
                # a write takes the lock now, not half-way through; a read sees one snapshot
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")

            def __exit__(self, exc_type, *_):
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()

    # -- reading ---------------------------------------------------------------------

    @guarded
    def results(self, run_ids, on_damaged: Callable[[str, str], None] | None = None) -> dict[str, dict]:
        """Stored results of the finished runs among run_ids, by id, each checked against its
        checksum. A row that fails is left out after `on_damaged(run_id, message)`; with no
        `on_damaged` it raises StoreError."""
        wanted = set(run_ids)
        out = {}
        for rid, cfg, outcome, text, env, digest in self.db.execute(
            "SELECT id, config, outcome, result, env, checksum FROM runs WHERE status=? ORDER BY id",
            (FINISHED,),
        ):
            if rid not in wanted:
                continue
            why = problem(self.path, rid, cfg, outcome, text, env, digest)
            if why is None:
                out[rid] = from_json(text)
            elif on_damaged is None:
                raise StoreError(unusable(self.path, why))
            else:
                on_damaged(rid, why)
        return out

    @guarded
    def poll(self, run_ids, on_damaged: Callable[[str, str], None]) -> tuple[dict, dict]:
        """(settled, running) for run_ids, read in one snapshot: settled holds the checked
        results of finished runs and {"outcome": "error", "error", "seconds"} for failed ones;
        running holds (owner, heartbeat) of running ones. Runs with no row, and finished ones
        that fail their checksum (reported to on_damaged), are in neither."""
        wanted = list(dict.fromkeys(run_ids))
        with self._transaction(write=False):
            settled = self.results(wanted, on_damaged)
            running = {}
            for rid, status, owner, beat, error, seconds in self.db.execute(
                "SELECT id, status, owner, heartbeat, error, seconds FROM runs WHERE status != ?",
                (FINISHED,),
            ):
                if rid not in wanted:
                    continue
                if status == ERROR:
                    settled[rid] = {"outcome": "error", "error": error, "seconds": seconds}
                elif status == RUNNING:
                    running[rid] = (owner, beat)
        return settled, running

    @guarded
    def runs(self, study: str | None = None) -> list[dict]:
        """Every run (of `study`), decoded. A finished row that fails its checksum raises
        StoreError naming the run and what to do, rather than being left out or marked: a
        damaged result never reaches a report, not even as a count."""
        query = ("SELECT id, study, config, status, outcome, env, started, finished, seconds, result, "
                 "error, checksum FROM runs")
        args: tuple = ()
        if study is not None:
            query += " WHERE study = ?"
            args = (study,)
        out = []
        for (rid, st, cfg, status, outcome, env, started, finished, secs, result, error,
             digest) in self.db.execute(query + " ORDER BY started, id", args):
            if status == FINISHED and (why := problem(self.path, rid, cfg, outcome, result, env, digest)):
                raise StoreError(unusable(self.path, why))
            try:
                decoded = from_json(cfg), from_json(env), from_json(result)
            except (TypeError, ValueError) as err:
                raise StoreError(unusable(self.path, f"stored run {rid} in {self.path} cannot be "
                                                     f"decoded ({err})")) from None
            out.append({
                "id": rid, "study": st, "config": decoded[0], "status": status,
                "outcome": outcome, "env": decoded[1], "started": started, "finished": finished,
                "seconds": secs, "result": decoded[2], "error": error,
            })
        return out

    @guarded
    def metrics(self, run_id: str) -> list[dict]:
        """Metric rows of one run as [{"step": s, name: value, ...}] sorted by step.

        For a finished run they are checked against the history of its checksummed result,
        of which they are a copy (kept for SQL queries): rows that differ raise StoreError.
        """
        rows = self.db.execute(
            "SELECT step, name, value FROM metrics WHERE run_id=? ORDER BY step, name", (run_id,)
        ).fetchall()
        row = self.db.execute("SELECT config, outcome, result, env, checksum FROM runs "
                              "WHERE id=? AND status=?", (run_id, FINISHED)).fetchone()
        if row is not None:
            if why := problem(self.path, run_id, *row):
                raise StoreError(unusable(self.path, why))
            history = from_json(row[2]).get("history") or []
            copied = sorted((r[1:] for r in _metric_rows(run_id, history)), key=lambda r: r[:2])
            if rows != copied:
                raise StoreError(damaged(self.path, f"the metrics of run {run_id} differ from its result"))
        by_step: dict[int, dict] = {}
        for step, name, value in rows:
            by_step.setdefault(step, {"step": step})[name] = float("nan") if value is None else value
        return [by_step[s] for s in sorted(by_step)]


def _seed(config) -> int | None:
    seed = config.get("seed") if isinstance(config, dict) else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None

"""One SQLite file per results folder: every run's config, outcome, environment and metrics.

A run's identity is the hash of what defines it (study + parameters), so asking for the
same run again finds it instead of recomputing it. WAL mode lets a killed writer leave a
consistent file: a run is either recorded as finished, with its result, or it is not.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER,
    status TEXT NOT NULL,          -- running | finished
    outcome TEXT,                  -- completed | diverged | ... (set by the run)
    env TEXT,
    started REAL,
    finished REAL,
    seconds REAL,
    result TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, name)
);
"""


def _json_default(obj):
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------

    def start(self, run_id: str, study: str, config: dict) -> None:
        """Mark a run as started; a leftover 'running' row from a killed process is replaced."""
        self.db.execute(
            "INSERT OR REPLACE INTO runs (id, study, config, seed, status, started) VALUES (?,?,?,?,?,?)",
            (run_id, study, json.dumps(config, sort_keys=True), config.get("seed"), "running", time.time()),
        )

    def finish(self, run_id: str, result: dict, env: dict | None = None) -> None:
        """Record the result and its metrics in one transaction: all of it or none of it."""
        history = result.get("history") or []
        rows = [
            (run_id, int(r["step"]), k, float(v) if math.isfinite(float(v)) else None)
            for r in history
            for k, v in r.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            self.db.executemany("INSERT INTO metrics VALUES (?,?,?,?)", rows)
            self.db.execute(
                "UPDATE runs SET status='finished', outcome=?, env=?, finished=?, seconds=?, result=? "
                "WHERE id=?",
                (
                    result.get("outcome", "completed"),
                    json.dumps(env or {}),
                    now,
                    result.get("seconds"),
                    json.dumps(result, default=_json_default, allow_nan=True),
                    run_id,
                ),
            )

    # -- reading ---------------------------------------------------------------------

    def finished_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM runs WHERE status='finished'")}

    def result(self, run_id: str) -> dict | None:
        row = self.db.execute(
            "SELECT result FROM runs WHERE id=? AND status='finished'", (run_id,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def runs(self, study: str | None = None) -> list[dict]:
        query = "SELECT id, study, config, status, outcome, env, seconds, result FROM runs"
        args: tuple = ()
        if study is not None:
            query += " WHERE study = ?"
            args = (study,)
        out = []
        for rid, st, cfg, status, outcome, env, secs, result in self.db.execute(query + " ORDER BY started", args):
            out.append({
                "id": rid, "study": st, "config": json.loads(cfg), "status": status,
                "outcome": outcome, "env": json.loads(env) if env else None, "seconds": secs,
                "result": json.loads(result) if result else None,
            })
        return out

    def metrics(self, run_id: str) -> list[dict]:
        """Metric rows of one run as [{"step": s, name: value, ...}] sorted by step."""
        by_step: dict[int, dict] = {}
        for step, name, value in self.db.execute(
            "SELECT step, name, value FROM metrics WHERE run_id=? ORDER BY step", (run_id,)
        ):
            by_step.setdefault(step, {"step": step})[name] = float("nan") if value is None else value
        return [by_step[s] for s in sorted(by_step)]

"""Run a grid of jobs once each, recording every result in the results folder's store.

A job is a JSON-able dict of parameters handed to a module-level function that returns a
JSON-able result. Its identity is the hash of (study, parameters): running the same grid
again returns stored results and computes only what is missing, so a killed sweep resumes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from actlab.env import environment
from actlab.store import Store

STORE_NAME = "runs.sqlite"


def job_id(study: str, params: dict) -> str:
    blob = json.dumps({"study": study, "params": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_grid(
    study: str,
    jobs: Sequence[dict],
    fn: Callable[[dict], dict],
    out_dir: str | Path,
    *,
    progress: bool = True,
) -> list[dict]:
    """Run `fn(params)` for every job not already finished; return all results in job order.

    Each returned result carries its "id" and "params" beside what `fn` returned.
    """
    store = Store(Path(out_dir) / STORE_NAME)
    env = environment()
    results: list[dict] = []
    try:
        done = store.finished_ids()
        todo = [p for p in jobs if job_id(study, p) not in done]
        with _bar(progress, study, len(jobs), len(jobs) - len(todo)) as (bar, task):
            for params in jobs:
                rid = job_id(study, params)
                result = store.result(rid) if rid in done else None
                if result is None:
                    store.start(rid, study, params)
                    t0 = time.perf_counter()
                    result = fn(params)
                    result.setdefault("seconds", time.perf_counter() - t0)
                    store.finish(rid, result, env)
                    bar.update(task, advance=1)
                results.append({"id": rid, "params": params, **result})
    finally:
        store.close()
    return results


class _bar:
    """A rich progress bar over a sweep (runs done / total, time left), or nothing."""

    def __init__(self, enabled: bool, label: str, total: int, done: int):
        self.enabled, self.label, self.total, self.done = enabled, label, total, done

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), disable=not self.enabled,
        )
        self.progress.__enter__()
        task = self.progress.add_task(self.label, total=self.total, completed=self.done)
        return self.progress, task

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

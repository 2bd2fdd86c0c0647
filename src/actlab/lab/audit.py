"""`actlab audit`: run every study, apply its rule, and write one report.

Each study keeps its runs in its own folder under the audit folder, so an interrupted
audit, run again, recomputes nothing that finished. A study that fails is recorded as
such and the audit goes on: the report shows what was obtained.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from actlab.training.env import environment
from actlab.studies.base import check_preset, get_study, write_verdict

# The article's order: mechanisms, outcome, output layer, where sigmoid survives, facts.
AUDIT_STUDIES = ("vanishing", "centering", "convergence", "output-head", "gates", "facts")


def run_audit(preset: str, out_dir: str | Path, *, studies=AUDIT_STUDIES, claims_file=None,
              progress: bool = True, on_done=None, data: str | None = None,
              tokenizer: str = "char") -> dict:
    """Run `studies` (and the user's claims in `claims_file`) at `preset` into `out_dir`, on
    the text at `data` (None: the bundled corpus) under `tokenizer`; write audit.json and the
    reports. User claims name their own data.

    `on_done(name, verdict_or_None, seconds, error)` is called after each study (for the CLI).
    """
    from actlab import studies as _registry  # noqa: F401  (registers every study)
    from actlab.report import render_report

    from actlab.studies.common import corpus_keys, corpus_record

    check_preset(preset)
    corpus = corpus_keys(data, tokenizer)  # a bad path or tokenizer fails before any study
    # The corpus reaches a study only when it is not the default, so a study registered with
    # the older run(preset, out_dir, progress) signature still runs on the bundled corpus.
    on = {"data": corpus.get("data"), "tokenizer": tokenizer} if corpus else {}
    runners = [(name, functools.partial(get_study(name).run, **on)) for name in studies]
    if claims_file:
        from actlab.lab.user_claims import load_claims, run_claim

        for claim in load_claims(claims_file):  # checked in full before anything runs
            runners.append((f"user-{claim['id']}", functools.partial(run_claim, claim)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "preset": preset,
        "corpus": {**corpus_record(None, corpus.get("data")), "tokenizer": tokenizer},
        "order": [name for name, _ in runners],
        "studies": {},
        "env": environment(),
        "command": " ".join(["actlab", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("actlab") else "",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    t_all = time.perf_counter()
    for name, run in runners:
        t0 = time.perf_counter()
        verdict, error = None, None
        try:
            verdict = run(preset, out / name, progress=progress)
            verdict.seconds = round(time.perf_counter() - t0, 2)
            write_verdict(verdict, out / name)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a failing study must not lose the others' results
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            (out / name).mkdir(parents=True, exist_ok=True)
            (out / name / "error.txt").write_text(traceback.format_exc())
        seconds = round(time.perf_counter() - t0, 2)
        meta["studies"][name] = {"seconds": seconds, "error": error,
                                 "verdict": verdict.verdict if verdict else None}
        _write_meta(out, meta, t_all)
        if on_done:
            on_done(name, verdict, seconds, error)
    meta["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write_meta(out, meta, t_all)
    meta["paths"] = render_report(out)
    return meta


def _write_meta(out: Path, meta: dict, t_all: float) -> None:
    meta["seconds"] = round(time.perf_counter() - t_all, 2)
    (out / "audit.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

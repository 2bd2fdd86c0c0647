"""`actlab audit`: run every study, apply its rule, and write one report.

Each study keeps its runs in its own folder under the audit folder, so an interrupted
audit, run again, recomputes nothing that finished. A study that fails is recorded as
such (error.txt in its folder, removed once a later audit's run of it succeeds) and the audit
goes on: the report shows what was obtained. A full or read-only disk stops the audit
instead, with its OSError. Every file is written atomically, audit.json as strict JSON.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from actlab.files.atomic import write_json, write_text
from actlab.files.schema import versioned
from actlab.training.env import environment
from actlab.studies.base import check_preset, get_study, write_verdict

# The article's order: mechanisms, outcome, output layer, where sigmoid survives, facts.
AUDIT_STUDIES = ("vanishing", "centering", "convergence", "output-head", "gates", "scaling", "stability",
                 "facts")

# A full disk, a quota, a read-only file system: the machine, not the study, failed. The
# audit stops there (the CLI says so in one line) instead of recording each later study as
# failed; what finished is kept and a re-run resumes from it.
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def run_audit(preset: str, out_dir: str | Path, *, studies=AUDIT_STUDIES, claims_file=None,
              progress: bool = True, on_done=None, data: str | None = None,
              tokenizer: str = "char", trust_code: bool = False) -> dict:
    """Run `studies` (and the user's claims in `claims_file`) at `preset` into `out_dir`, on
    the text at `data` (None: the bundled corpus) under `tokenizer`; write audit.json and the
    reports. User claims name their own data.

    `on_done(name, verdict_or_None, seconds, error)` is called after each study (for the CLI).
    `trust_code`: allow import paths (which run code) as activations in the claims file.
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

        for claim in load_claims(claims_file, trust_code=trust_code):  # checked in full before anything runs
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
            (out / name / "error.txt").unlink(missing_ok=True)  # an earlier failure's, now stale
        except KeyboardInterrupt:
            raise
        except OSError as exc:
            if exc.errno in MACHINE_ERRNOS:
                raise  # every later study would fail the same way, and so would error.txt
            error = _record_failure(out / name, exc)
        except Exception as exc:  # a failing study must not lose the others' results
            error = _record_failure(out / name, exc)
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


def _record_failure(study_dir: Path, exc: Exception) -> str:
    """Write the study's error.txt (the traceback) and return the error's one line. A failure
    to write it is not allowed to replace the study's own error."""
    error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    with contextlib.suppress(OSError):
        study_dir.mkdir(parents=True, exist_ok=True)
        write_text(study_dir / "error.txt", traceback.format_exc())
    return error


def _write_meta(out: Path, meta: dict, t_all: float) -> None:
    meta["seconds"] = round(time.perf_counter() - t_all, 2)
    # strict JSON (non-finite numbers as null); what JSON cannot hold (a Path) as its text
    write_json(out / "audit.json", versioned(meta), default=str)

"""The Python calls behind `actlab study`, `actlab compare` and `actlab audit`, with the
command line's defaults, for notebooks and scripts (exported as `actlab.run_study`,
`actlab.compare` and `actlab.audit`). Each writes the same folder the command writes and
returns what the command prints; progress bars are off unless asked for."""

from __future__ import annotations

import time
from pathlib import Path

from actlab.errors import ActlabError


def run_study(name: str, preset: str = "quick", out: str | Path | None = None, *,
              data: str | None = None, tokenizer: str = "char", executor: str = "local",
              address: str | None = None, progress: bool = False):
    """Run one claim's study (`actlab study NAME`) into `out` (default results/NAME-PRESET)
    and return its Verdict; verdict.json, figures/ and runs.sqlite are written there, and
    finished runs are reused when it is run again."""
    from actlab.engine.sweep import executor_defaults
    from actlab.studies.base import check_preset, get_study, write_verdict

    study = get_study(name)
    preset = check_preset(preset)
    out = Path(out if out is not None else f"results/{study.name}-{preset}")
    t0 = time.perf_counter()
    with executor_defaults(executor, address):
        verdict = study.run(preset, out, progress=progress, data=data, tokenizer=tokenizer)
    verdict.seconds = round(time.perf_counter() - t0, 2)
    write_verdict(verdict, out)
    return verdict


def compare(acts, data: str | None = None, *, budget: float | str = "10m", seeds: int = 3,
            out: str | Path = "results/compare", lr: float | None = None, steps: int | None = None,
            tokenizer: str = "char", device: str = "auto", workers: int = 1,
            executor: str | None = None, address: str | None = None, progress: bool = False) -> dict:
    """Rank activations on your text (`actlab compare`): `acts` as a list or "a,b,c"; `budget`
    in seconds or as "90s", "10m", "1.5h"; `steps` fixes the step count (no calibration) and
    `lr` one learning rate (no tuning). Returns the ranking that ranking.json holds."""
    from actlab.lab.compare import check_inputs, parse_budget, run_compare

    if isinstance(acts, str):
        acts = split_top_level(acts)
    budget_s = parse_budget(budget) if isinstance(budget, str) else float(budget)
    if not budget_s > 0:
        raise ActlabError(f"budget must be a positive number of seconds, got {budget!r}")
    acts = check_inputs(list(acts), seeds)
    return run_compare(data, acts, budget_s, seeds, Path(out), progress=progress, lr=lr,
                       steps=steps, tokenizer=tokenizer, device=device, workers=workers,
                       executor=executor, address=address)


def audit(preset: str = "quick", out: str | Path | None = None, *, studies=None,
          claims: str | None = None, data: str | None = None, tokenizer: str = "char",
          trust_code: bool = False, executor: str = "local", address: str | None = None,
          progress: bool = False) -> dict:
    """Every claim of the article (`actlab audit`), or the `studies` named, into `out`
    (default results/audit-PRESET); writes report.html, report.md and verdicts.json and
    returns the audit's record (audit.json): each study's verdict, time and error."""
    from actlab.engine.sweep import executor_defaults
    from actlab.lab.audit import AUDIT_STUDIES, run_audit

    names = AUDIT_STUDIES if studies is None else tuple(studies)
    out = Path(out if out is not None else f"results/audit-{preset}")
    with executor_defaults(executor, address):
        return run_audit(preset, out, studies=names, claims_file=claims, progress=progress,
                         data=data, tokenizer=tokenizer, trust_code=trust_code)


def split_top_level(text: str) -> list[str]:
    """'gelu,max(x, 0),swiglu' -> ['gelu', 'max(x, 0)', 'swiglu']: commas inside a formula's
    parentheses do not separate activations."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return [p for p in parts if p]

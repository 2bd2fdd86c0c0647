"""`actlab study`, `actlab compare`, `actlab audit` and `actlab report`."""

from __future__ import annotations

import argparse
import sys

from actlab.cli.args import (
    check_device, check_executor, check_out_dir, positive_float, positive_int,
)
from actlab.errors import ActlabError


def register(sub) -> None:
    from actlab.lab.compare import SIZING_RULE
    from actlab.lab.compare_tune import TUNING_RULE
    from actlab.config import DEVICES, TOKENIZERS
    from actlab.lab.gate import VERDICT_TRIPPED, verdict_names
    from actlab.studies.base import PRESET_NAMES

    p = sub.add_parser("study", help="run one claim's study: stored runs, a verdict, figures",
                       description="Run one study (vanishing, centering, convergence, output-head, gates, "
                                   "facts) and write DIR/verdict.json, DIR/figures/*.png and DIR/runs.sqlite. "
                                   "Finished runs are reused on re-run.")
    p.add_argument("name", help="study name: vanishing, centering, convergence, output-head, gates or facts")
    p.add_argument("--preset", default="quick", choices=PRESET_NAMES,
                   help="smoke: seconds (tests); quick: minutes on a laptop CPU; standard: up to "
                        "two hours on 2 CPU cores; full: a GPU (default: quick)")
    _corpus_args(p, TOKENIZERS)
    p.add_argument("--out", metavar="DIR", help="results folder (default: results/NAME-PRESET)")
    p.add_argument("--fail-on", type=verdict_names, metavar="V1,V2", help=f"exit {VERDICT_TRIPPED} (after writing every file) if the verdict is one of these: SUPPORTED, 'SUPPORTED WITH CAVEAT', 'NOT SUPPORTED', INCONCLUSIVE")
    _executor_args(p, "local")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("compare", help="rank activations on your text within a time budget, with 95%% CIs",
                       description="Tune each activation's learning rate, train every activation at its rate "
                                   "on the same seeds and batches, rank them by final "
                                   "validation loss with 95% CIs and paired t-tests against the best (Holm-"
                                   "corrected), and write DIR/ranking.json, DIR/plan.json and DIR/figures/*.png. "
                                   "Re-running with the same arguments resumes and reuses finished runs. "
                                   + SIZING_RULE + " " + TUNING_RULE)
    p.add_argument("--data", metavar="PATH", help="a .txt file or a folder of .txt files (default: the bundled Shakespeare corpus)")
    p.add_argument("--acts", required=True, metavar="A,B,...", help="comma-separated activations from `actlab acts` (or formulas), at least two, e.g. gelu,swiglu,sigmoid")
    p.add_argument("--budget", default="10m", metavar="TIME", help="wall-clock budget for the whole comparison, calibration and learning-rate tuning included: seconds, or 90s, 10m, 1.5h (default: 10m)")
    p.add_argument("--seeds", type=positive_int, default=3, metavar="N", help="seeds per activation; a seed fixes the initial weights and the batches, the same for every activation (default: 3)")
    p.add_argument("--lr", type=positive_float, metavar="LR", help="one peak learning rate for every activation, and no tuning runs (default: each activation's rate tuned within the budget around the model size's: 3e-3 tiny and small, 1e-3 medium, 6e-4 large)")
    p.add_argument("--tokenizer", choices=TOKENIZERS, default="char", help="char | byte | bpe (default: char)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where to train (default: auto = cuda if available)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N", help="runs at once, in worker processes, 1 thread each (default: 1: timings stay predictable on shared cores)")
    p.add_argument("--out", metavar="DIR", help="results folder (default: results/compare)")
    _executor_args(p, "serial with --workers 1, else local", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("audit", help="every claim of the article: run the studies, write the report",
                       description="Run every study, apply each decision rule and write DIR/report.html "
                                   "(self-contained), DIR/report.md and DIR/verdicts.json. Run it again "
                                   "after an interruption: finished runs are reused.")
    p.add_argument("--preset", default="quick", choices=PRESET_NAMES,
                   help="smoke: about a minute; quick: about 20 minutes on 2 CPU cores; standard: "
                        "hours on 2 CPU cores; full: a GPU (default: quick)")
    _corpus_args(p, TOKENIZERS)
    p.add_argument("--out", metavar="DIR", help="audit folder (default: results/audit-PRESET)")
    p.add_argument("--studies", metavar="A,B", help="only these studies, comma-separated, or none (with --claims) (default: all)")
    p.add_argument("--fail-on", type=verdict_names, metavar="V1,V2", help=f"exit {VERDICT_TRIPPED} (after writing every file) if any study's or claim's verdict is one of these: SUPPORTED, 'SUPPORTED WITH CAVEAT', 'NOT SUPPORTED', INCONCLUSIVE; a failed study's exit 1 comes first")
    _executor_args(p, "local")
    p.add_argument("--claims", metavar="FILE.toml", help="also judge your own claims: [[claim]] tables with "
                   "text, candidate, baseline and optionally data, seeds, steps, margin (see actlab.lab.user_claims)")
    p.add_argument("--trust-code", action="store_true", help="allow import paths (pkg.mod:fn) as activations "
                   "in the --claims file: importing them runs that module's code")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("report", help="render the report of an audit folder again, running nothing")
    p.add_argument("dir", metavar="DIR", help="an audit folder written by `actlab audit`")
    p.set_defaults(func=cmd_report)


def _executor_args(p, default_text: str, default: str | None = "local") -> None:
    from actlab.engine.executors import EXECUTORS

    p.add_argument("--executor", choices=EXECUTORS, default=default,
                   help="where runs execute: local worker processes, this process (serial), or "
                        f"Ray; the numbers are the same on each (default: {default_text})")
    p.add_argument("--address", metavar="HOST:PORT", help="with --executor ray: an existing Ray "
                   "cluster (default: start one locally)")
    p.add_argument("--gpus-per-run", type=float, metavar="G", help="with --executor ray: GPUs each "
                   "run requests; a fraction shares a GPU (0.25: four runs per GPU), above 1 a whole "
                   "number (default: 1 for runs that may train on CUDA when the cluster has GPUs, else 0)")
    p.add_argument("--cpus-per-run", type=float, metavar="N", help="with --executor ray: CPUs each "
                   "run requests from the scheduler; its torch threads stay the same, and so do the "
                   "numbers (default: the run's thread count, 1)")


def _corpus_args(p, tokenizers) -> None:
    p.add_argument("--data", metavar="PATH", help="your text: a UTF-8 .txt file or a folder of .txt "
                   "files, split 90/10 into training and validation (default: the bundled "
                   "Shakespeare corpus)")
    p.add_argument("--tokenizer", choices=tokenizers, default="char",
                   help="how the GPT studies (convergence, gates) tokenize it; the MLP and probe "
                        "studies read characters and output-head has its own vocabularies (default: char)")


def cmd_study(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from actlab.engine.sweep import executor_defaults
    from actlab.studies.base import check_preset, get_study, write_verdict

    study = get_study(args.name)
    preset = check_preset(args.preset)
    args.out = str(check_out_dir(args.out if args.out is not None else f"results/{study.name}-{preset}"))
    out = Path(args.out)
    check_executor(args.executor, args.address, args.gpus_per_run, args.cpus_per_run)
    args.work_started = True
    t0 = time.perf_counter()
    with executor_defaults(args.executor, args.address, gpus_per_run=args.gpus_per_run,
                           cpus_per_run=args.cpus_per_run):
        verdict = study.run(preset, out, progress=not args.quiet and sys.stderr.isatty(),
                            data=args.data, tokenizer=args.tokenizer)
    verdict.seconds = round(time.perf_counter() - t0, 2)
    path = write_verdict(verdict, out)
    print(f"{verdict.claim} {study.name} [{preset}]: {verdict.verdict}")
    if verdict.summary:
        print(f"  {verdict.summary}")
    print(f"  rule: {verdict.rule}")
    for caveat in verdict.caveats:
        print(f"  caveat: {caveat}")
    print(f"  {verdict.seconds:.1f} s; verdict: {path}; figures: {out / 'figures'}")
    from actlab.lab.gate import VERDICT_TRIPPED, tripped, tripped_line

    hits = tripped({study.name: verdict.verdict}, args.fail_on)
    if hits:
        print(tripped_line("study", hits), file=sys.stderr)
        return VERDICT_TRIPPED
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from actlab.lab.api import split_top_level
    from actlab.lab.compare import check_inputs, format_table, parse_budget, run_compare

    budget = parse_budget(args.budget)
    acts = check_inputs(split_top_level(args.acts), args.seeds)
    args.out = str(check_out_dir(args.out if args.out is not None else "results/compare"))
    out = Path(args.out)
    check_device(args.device)
    check_executor(args.executor, args.address, args.gpus_per_run, args.cpus_per_run)
    args.work_started = True
    from actlab.engine.sweep import executor_defaults

    with executor_defaults(gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run):
        ranking = run_compare(args.data, acts, budget, args.seeds, out,
                              progress=not args.quiet and sys.stderr.isatty(), lr=args.lr,
                              tokenizer=args.tokenizer, device=args.device, workers=args.workers,
                              executor=args.executor, address=args.address)
    print(format_table(ranking))
    print(f"{ranking['wall_s']:.1f} s of a {budget:g} s budget; ranking: {out / 'ranking.json'}; "
          f"figures: {out / 'figures'}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.markup import escape

    from actlab.lab.audit import AUDIT_STUDIES, run_audit
    from actlab.studies.base import get_study

    names = AUDIT_STUDIES
    if args.studies is not None:
        if not args.studies.strip():
            raise ActlabError("--studies is empty: name studies (a,b), or none with --claims")
        names = () if args.studies == "none" else tuple(n.strip() for n in args.studies.split(","))
    if not names and not args.claims:
        raise ActlabError("--studies none runs nothing: add --claims FILE.toml")
    for name in names:
        get_study(name)  # an unknown name fails before anything else
    args.out = str(check_out_dir(args.out if args.out is not None else f"results/audit-{args.preset}"))
    out = Path(args.out)
    check_executor(args.executor, args.address, args.gpus_per_run, args.cpus_per_run)
    args.work_started = True
    console = Console(stderr=True)

    def on_done(name, verdict, seconds, error):
        status = verdict.verdict if verdict else f"ERROR ({error})"
        console.print(f"[bold]{escape(name)}[/bold] finished in {seconds:.0f} s: {escape(status)}")

    from actlab.engine.sweep import executor_defaults

    with executor_defaults(args.executor, args.address, gpus_per_run=args.gpus_per_run,
                           cpus_per_run=args.cpus_per_run):
        meta = run_audit(args.preset, out, studies=names, claims_file=args.claims, trust_code=args.trust_code,
                         progress=not args.quiet and sys.stderr.isatty(), on_done=on_done,
                         data=args.data, tokenizer=args.tokenizer)
    _print_verdict_table(out)
    print(f"report: {meta['paths']['html']}  (also report.md, verdicts.json)")
    failed = [n for n, m in meta["studies"].items() if m["error"]]
    if failed:
        print(f"actlab audit: error: {len(failed)} studies failed ({', '.join(failed)}); "
              f"see {out}/<study>/error.txt; run the same command again to continue", file=sys.stderr)
    from actlab.lab.gate import VERDICT_TRIPPED, tripped, tripped_line

    hits = tripped({n: m["verdict"] for n, m in meta["studies"].items()}, args.fail_on)
    if hits:
        print(tripped_line("audit", hits), file=sys.stderr)
    return 1 if failed else VERDICT_TRIPPED if hits else 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from actlab.report import collect, render_report

    collect(args.dir)  # a damaged folder is named in one line before anything is written
    if Path(args.dir).is_dir():
        check_out_dir(args.dir, flag="DIR")
    args.work_started = True
    paths = render_report(args.dir)
    _print_verdict_table(args.dir)
    print(f"report: {paths['html']}  (also report.md, verdicts.json)")
    return 0


def _print_verdict_table(out_dir) -> None:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from actlab.article.verdicts import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
    from actlab.report.collect import collect
    from actlab.report.render import _fmt_seconds, _verdict_rows

    data = collect(out_dir)
    colours = {SUPPORTED: "green", CAVEAT: "yellow", NOT_SUPPORTED: "red", INCONCLUSIVE: "blue"}
    # the cells are the stored files' strings: escaped, so a '[' in them is not rich markup
    table = Table(box=box.SIMPLE_HEAD, title=f"verdicts ({escape(str(data['meta'].get('preset')))} preset)")
    for col in ("claim", "study", "verdict", "evidence", "time"):
        table.add_column(col, overflow="fold")
    for r in _verdict_rows(data["studies"]):
        colour = colours.get(r["verdict"], "magenta")
        table.add_row(escape(str(r["claim"])), escape(str(r["study"])),
                      f"[{colour}]{escape(str(r['verdict']))}[/{colour}]", escape(str(r["summary"])),
                      _fmt_seconds(r["seconds"]))
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    console.print(table)
    print(f"total wall time: {_fmt_seconds(data['meta'].get('seconds'))}")

"""The `actlab` command line. Entry points stay thin: parse, call the library, print.

Every user error surfaces as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from actlab.errors import ActlabError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line (and still exits 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _int(text, 1)


def _nonneg_int(text: str) -> int:
    return _int(text, 0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


# -- actlab acts ---------------------------------------------------------------------


def cmd_acts(args: argparse.Namespace) -> int:
    from actlab import activations

    rows = [activations.measure(name) | {"name": name} for name in activations.names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, title="activations (every property measured from the function)")
    cols = [("name", "name"), ("range [-10,10]", None), ("mean", "mean"), ("std", "std"),
            ("max|f'|", "max_abs_grad"), ("saturated", "saturation"), ("centred", "zero_centred"),
            ("monotone", "monotone"), ("smooth", "smooth"), ("gated", "gated")]
    for title, key in cols:
        table.add_column(title, justify="left" if key == "name" else "right", no_wrap=True)
    for r in rows:
        cells = []
        for _, key in cols:
            if key is None:
                cells.append(f"{r['range_min']:.3g} .. {r['range_max']:.3g}")
            elif key == "name":
                cells.append(r["name"] + (f" ({r['gate']})" if r.get("gate") else ""))
            elif isinstance(r[key], bool):
                cells.append("yes" if r[key] else "-")
            else:
                cells.append(f"{r[key]:.3f}")
        table.add_row(*cells)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # pipes and files get the whole table, unwrapped
    console.print(table)
    print("mean, std: of f(x) for x ~ N(0, 1).  saturated: fraction of x ~ N(0, 3^2) with |f'(x)| < 0.01.\n"
          "centred: |mean| < 0.1.  Gated rows (gate in brackets) describe the gate function f in f(a) * b.")
    return 0


# -- actlab train --------------------------------------------------------------------

# flag -> config key; flags default to None so that only what the user typed overrides
# the config file, which overrides the built-in defaults.
TRAIN_FLAGS = {
    "act": "act", "data": "data", "tokenizer": "tokenizer", "bpe_vocab": "bpe_vocab",
    "seed": "seed", "steps": "steps", "batch_size": "batch_size", "lr": "lr",
    "warmup": "warmup_steps", "optimizer": "optimizer", "grad_clip": "grad_clip",
    "eval_every": "eval_every", "eval_batches": "eval_batches", "n_layer": "n_layer",
    "n_head": "n_head", "n_embd": "n_embd", "block_size": "block_size", "norm": "norm",
    "attention": "attention", "head": "head", "no_residual": "residual",
    "device": "device", "dtype": "dtype", "threads": "threads",
}


def add_train_args(p: argparse.ArgumentParser) -> None:
    from actlab.config import ATTENTIONS, DEVICES, DTYPES, HEADS, NORMS, OPTIMIZERS, TOKENIZERS

    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="PATH", help="a .txt file or a folder of .txt files (default: the bundled Shakespeare corpus)")
    g.add_argument("--tokenizer", choices=TOKENIZERS, help="char | byte (256 ids) | bpe (trained on the training split, cached) (default: char)")
    g.add_argument("--bpe-vocab", type=_positive_int, metavar="N", help="BPE vocabulary size in tokens (default: 1024)")
    g = p.add_argument_group("model")
    g.add_argument("--act", metavar="NAME", help="FFN activation: a name from `actlab acts`, a formula in x such as 'x * sigmoid(1.702 * x)', or pkg.mod:fn (default: gelu)")
    g.add_argument("--n-layer", type=_positive_int, metavar="N", help="transformer blocks (default: 4)")
    g.add_argument("--n-head", type=_positive_int, metavar="N", help="attention heads per block (default: 4)")
    g.add_argument("--n-embd", type=_positive_int, metavar="N", help="model width in channels (default: 128)")
    g.add_argument("--block-size", type=_positive_int, metavar="T", help="context length in tokens (default: 128)")
    g.add_argument("--norm", choices=NORMS, help="normalisation layer (default: layernorm)")
    g.add_argument("--attention", choices=ATTENTIONS, help="softmax | softmax_gated (sigmoid output gate, Qwen 2025) | sigmoid (bias -log n, Apple 2024) | sigmoid_nobias (default: softmax)")
    g.add_argument("--head", choices=HEADS, help="output head: softmax + cross-entropy | sigmoid + binary cross-entropy (default: softmax)")
    g.add_argument("--no-residual", action="store_const", const=False, default=None, help="remove the residual connections (the textbook vanishing-gradient ablation)")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=_positive_int, metavar="N", help="optimizer steps (default: 200)")
    g.add_argument("--batch-size", type=_positive_int, metavar="B", help="sequences per step; tokens/step = B x block size (default: 16)")
    g.add_argument("--lr", type=_positive_float, metavar="LR", help="peak learning rate after warmup (default: 2e-3)")
    g.add_argument("--warmup", type=_nonneg_int, metavar="N", help="linear warmup steps before the cosine decay (default: 20)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help="adamw | sgd (default: adamw)")
    g.add_argument("--grad-clip", type=float, metavar="NORM", help="max global gradient norm, 0 = no clipping; the unclipped norm is always logged (default: 1.0)")
    g.add_argument("--seed", type=_nonneg_int, metavar="S", help="seed for init and data order (default: 0)")
    g.add_argument("--eval-every", type=_positive_int, metavar="N", help="steps between validation evaluations (default: 50)")
    g.add_argument("--eval-batches", type=_positive_int, metavar="N", help="fixed validation batches per evaluation (default: 8)")
    g = p.add_argument_group("run")
    g.add_argument("--config", metavar="FILE", help="JSON or TOML file of config keys (flat, or [model]/[train] tables); flags override it")
    g.add_argument("--device", choices=DEVICES, help="where to train (default: auto = cuda if available)")
    g.add_argument("--dtype", choices=DTYPES, help="bfloat16 = autocast on CUDA; CPU always float32 (default: float32)")
    g.add_argument("--threads", type=_nonneg_int, metavar="N", help="torch CPU threads, 0 = torch's default (default: 0)")
    g.add_argument("--out", metavar="DIR", help="run folder for config.json, env.json, metrics.jsonl, model.safetensors (default: none written)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace):
    from actlab.config import TrainConfig, load_config_file, merge

    overrides = load_config_file(args.config) if args.config else {}
    typed = {key: getattr(args, flag) for flag, key in TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    cfg = merge(TrainConfig(), overrides)
    return merge(cfg, typed)


def cmd_train(args: argparse.Namespace) -> int:
    from actlab.train import train

    cfg = config_from_args(args)
    result = train(cfg, args.out, progress=not args.quiet and sys.stderr.isatty())
    first = result.history[0]["train_loss"] if result.history else float("nan")
    vals = [r["val_loss"] for r in result.history if "val_loss" in r]
    print(f"act={cfg.model.act} params={result.n_params:,} outcome={result.outcome} steps={result.steps}")
    print(f"train loss {first:.4f} -> {result.train_loss:.4f}", end="")
    if vals:
        print(f"; val loss {vals[0]:.4f} (step {cfg.eval_every}) -> {vals[-1]:.4f}", end="")
    print(f"; {result.tokens_per_s:,.0f} tok/s; {result.seconds:.1f} s")
    if result.out_dir:
        print(f"run folder: {result.out_dir}")
    return 0


# -- actlab study --------------------------------------------------------------------


def cmd_study(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from actlab.studies.base import check_preset, get_study, write_verdict

    study = get_study(args.name)
    preset = check_preset(args.preset)
    out = Path(args.out or f"results/{study.name}-{preset}")
    t0 = time.perf_counter()
    verdict = study.run(preset, out, progress=not args.quiet and sys.stderr.isatty())
    verdict.seconds = round(time.perf_counter() - t0, 2)
    path = write_verdict(verdict, out)
    print(f"{verdict.claim} {study.name} [{preset}]: {verdict.verdict}")
    if verdict.summary:
        print(f"  {verdict.summary}")
    print(f"  rule: {verdict.rule}")
    for caveat in verdict.caveats:
        print(f"  caveat: {caveat}")
    print(f"  {verdict.seconds:.1f} s; verdict: {path}; figures: {out / 'figures'}")
    return 0


# -- actlab audit / report ------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from actlab.audit import AUDIT_STUDIES, run_audit

    names = tuple(args.studies.split(",")) if args.studies else AUDIT_STUDIES
    out = Path(args.out or f"results/audit-{args.preset}")
    console = Console(stderr=True)

    def on_done(name, verdict, seconds, error):
        status = verdict.verdict if verdict else f"ERROR ({error})"
        console.print(f"[bold]{name}[/bold] finished in {seconds:.0f} s: {status}")

    meta = run_audit(args.preset, out, studies=names, progress=not args.quiet and sys.stderr.isatty(),
                     on_done=on_done)
    _print_verdict_table(out)
    print(f"report: {meta['paths']['html']}  (also report.md, verdicts.json)")
    failed = [n for n, m in meta["studies"].items() if m["error"]]
    if failed:
        print(f"actlab audit: error: {len(failed)} studies failed ({', '.join(failed)}); "
              f"see {out}/<study>/error.txt; run the same command again to continue", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from actlab.report import render_report

    paths = render_report(args.dir)
    _print_verdict_table(args.dir)
    print(f"report: {paths['html']}  (also report.md, verdicts.json)")
    return 0


def _print_verdict_table(out_dir) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from actlab.report.collect import collect
    from actlab.report.render import _fmt_seconds, _verdict_rows

    data = collect(out_dir)
    colours = {"SUPPORTED": "green", "SUPPORTED WITH CAVEAT": "yellow", "NOT SUPPORTED": "red",
               "INCONCLUSIVE": "blue"}
    table = Table(box=box.SIMPLE_HEAD, title=f"verdicts ({data['meta'].get('preset')} preset)")
    for col in ("claim", "study", "verdict", "evidence", "time"):
        table.add_column(col, overflow="fold")
    for r in _verdict_rows(data["studies"]):
        colour = colours.get(r["verdict"], "magenta")
        table.add_row(r["claim"], r["study"], f"[{colour}]{r['verdict']}[/{colour}]", str(r["summary"]),
                      _fmt_seconds(r["seconds"]))
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    console.print(table)
    print(f"total wall time: {_fmt_seconds(data['meta'].get('seconds'))}")


# -- entry point ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="actlab", description="Measure what activation functions do in small GPTs, and choose one with evidence.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("acts", help="table of every registered activation with measured properties")
    p.add_argument("--json", action="store_true", help="print the same rows as JSON")
    p.set_defaults(func=cmd_acts)

    p = sub.add_parser("train", help="train one GPT on the bundled corpus or your text",
                       description="Train one GPT and write config.json, env.json, metrics.jsonl and model.safetensors to --out.")
    add_train_args(p)
    p.set_defaults(func=cmd_train)

    from actlab.studies.base import PRESETS

    p = sub.add_parser("study", help="run one claim's study: stored runs, a verdict, figures",
                       description="Run one study (vanishing, centering, ...) and write DIR/verdict.json, "
                                   "DIR/figures/*.png and DIR/runs.sqlite. Finished runs are reused on re-run.")
    p.add_argument("name", help="study name, e.g. vanishing or centering")
    p.add_argument("--preset", default="quick", choices=PRESETS,
                   help="smoke: seconds (tests); quick: minutes on a laptop CPU; full: a GPU (default: quick)")
    p.add_argument("--out", metavar="DIR", help="results folder (default: results/NAME-PRESET)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("audit", help="every claim of the article: run the studies, write the report",
                       description="Run every study, apply each decision rule and write DIR/report.html "
                                   "(self-contained), DIR/report.md and DIR/verdicts.json. Run it again "
                                   "after an interruption: finished runs are reused.")
    p.add_argument("--preset", default="quick", choices=PRESETS,
                   help="smoke: about a minute; quick: about 10 minutes on 2 CPU cores; full: a GPU (default: quick)")
    p.add_argument("--out", metavar="DIR", help="audit folder (default: results/audit-PRESET)")
    p.add_argument("--studies", metavar="A,B", help="only these studies, comma-separated (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("report", help="render the report of an audit folder again, running nothing")
    p.add_argument("dir", metavar="DIR", help="an audit folder written by `actlab audit`")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ActlabError as err:
        print(f"actlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"actlab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

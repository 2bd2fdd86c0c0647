"""`actlab acts`, `actlab zoo` and `actlab train`: activations, model facts, one training run."""

from __future__ import annotations

import argparse
import json
import sys

from actlab.cli.args import (
    check_device, check_out_dir, nonneg_float, nonneg_int, positive_float, positive_int,
)
from actlab.errors import ActlabError


def register(sub) -> None:
    p = sub.add_parser("acts", help="table of every registered activation with measured properties")
    p.add_argument("--json", action="store_true", help="print the same rows as JSON")
    p.set_defaults(func=cmd_acts)

    p = sub.add_parser("zoo", help="which activations well-known LLMs use, each row with its public source",
                       description="Print the shipped table of model activations (FFN, gating, attention gate, "
                                   "MoE router), each row with its public source, and the article's model facts "
                                   "judged against it.")
    p.add_argument("--json", action="store_true", help="every row (all sources in full) and the fact verdicts as JSON")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("train", help="train one GPT on the bundled corpus or your text",
                       description="Train one GPT and write config.json, env.json, metrics.jsonl and model.safetensors to --out.")
    add_train_args(p)
    p.set_defaults(func=cmd_train)


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


def cmd_zoo(args: argparse.Namespace) -> int:
    from actlab.article import zoo

    rows = zoo.load()
    facts = zoo.fact_verdicts(rows)
    if args.json:
        print(json.dumps({"models": rows, "facts": facts, "fact_rule": zoo.FACT_RULE}, indent=2,
                         ensure_ascii=False))
        return 0
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # pipes and files get the table unwrapped
    console.print(zoo.zoo_table(rows, width=console.width))
    print(f"The article's model facts. Rule: {zoo.FACT_RULE}")
    for f in facts:
        print(f"  {f['verdict']:<13}  {f['claim']}  ({f['reason']})")
        for m in f["models"]:
            for source in m["sources"]:
                print(f"                 {m['model']}: {source}")
    print("Full sources of every row: actlab zoo --json")
    return 0


# flag -> config key; flags default to None so that only what the user typed overrides
# the config file, which overrides the built-in defaults.
TRAIN_FLAGS = {
    "act": "act", "data": "data", "tokenizer": "tokenizer", "bpe_vocab": "bpe_vocab",
    "seed": "seed", "steps": "steps", "batch_size": "batch_size", "lr": "lr",
    "warmup": "warmup_steps", "optimizer": "optimizer", "grad_clip": "grad_clip",
    "eval_every": "eval_every", "eval_batches": "eval_batches", "n_layer": "n_layer",
    "n_head": "n_head", "n_embd": "n_embd", "block_size": "block_size", "norm": "norm",
    "attention": "attention", "head": "head", "no_residual": "residual",
    "device": "device", "dtype": "dtype", "threads": "threads", "compile": "compile",
    "kernels": "kernels", "ffn": "ffn", "n_experts": "n_experts", "top_k": "top_k",
    "router": "router",
}


def add_train_args(p: argparse.ArgumentParser) -> None:
    from actlab.config import (
        ATTENTIONS, COMPILE_AUTO_STEPS, COMPILE_CHOICES, DEVICES, DTYPES, FFNS, HEADS, KERNELS,
        NORMS, OPTIMIZERS, ROUTERS, TOKENIZERS,
    )

    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="PATH", help="a .txt file or a folder of .txt files (default: the bundled Shakespeare corpus)")
    g.add_argument("--tokenizer", metavar="KIND|FILE", help=f"{' | '.join(TOKENIZERS)} (char: the characters of the training split; byte: 256 ids; bpe: trained on the training split, cached), or the path of an existing Hugging Face tokenizer.json, used as it is; the run folder keeps a copy (default: char)")
    g.add_argument("--bpe-vocab", type=positive_int, metavar="N", help="BPE vocabulary size in tokens (default: 1024)")
    g = p.add_argument_group("model")
    g.add_argument("--act", metavar="NAME", help="FFN activation: a name from `actlab acts`, a formula in x such as 'x * sigmoid(1.702 * x)', or pkg.mod:fn (default: gelu)")
    g.add_argument("--n-layer", type=positive_int, metavar="N", help="transformer blocks (default: 4)")
    g.add_argument("--n-head", type=positive_int, metavar="N", help="attention heads per block (default: 4)")
    g.add_argument("--n-embd", type=positive_int, metavar="N", help="model width in channels (default: 128)")
    g.add_argument("--block-size", type=positive_int, metavar="T", help="context length in tokens (default: 128)")
    g.add_argument("--norm", choices=NORMS, help="normalisation layer (default: layernorm)")
    g.add_argument("--attention", choices=ATTENTIONS, help="softmax | softmax_gated (sigmoid output gate, Qwen 2025) | sigmoid (bias -log n, Apple 2024) | sigmoid_nobias (default: softmax)")
    g.add_argument("--head", choices=HEADS, help="output head: softmax + cross-entropy | sigmoid + binary cross-entropy (default: softmax)")
    g.add_argument("--ffn", choices=FFNS, help="the block's FFN: dense (one MLP) | moe (top-k mixture of experts, each an MLP of hidden/E units) (default: dense)")
    g.add_argument("--n-experts", type=positive_int, metavar="E", help="experts of a --ffn moe (default: 4)")
    g.add_argument("--top-k", type=positive_int, metavar="K", help="experts chosen per token by a --ffn moe (default: 2)")
    g.add_argument("--router", choices=ROUTERS, help="MoE router scores: softmax over experts (Mixtral) | sigmoid per expert (DeepSeek-V3), renormalised over the chosen K (default: softmax)")
    g.add_argument("--no-residual", action="store_const", const=False, default=None, help="remove the residual connections (the textbook vanishing-gradient ablation)")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=positive_int, metavar="N", help="optimizer steps (default: 200)")
    g.add_argument("--batch-size", type=positive_int, metavar="B", help="sequences per step; tokens/step = B x block size (default: 16)")
    g.add_argument("--lr", type=positive_float, metavar="LR", help="peak learning rate after warmup (default: 2e-3)")
    g.add_argument("--warmup", type=nonneg_int, metavar="N", help="linear warmup steps before the cosine decay (default: 20)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help="adamw | sgd (default: adamw)")
    g.add_argument("--grad-clip", type=nonneg_float, metavar="NORM", help="max global gradient norm, 0 = no clipping; the unclipped norm is always logged (default: 1.0)")
    g.add_argument("--seed", type=nonneg_int, metavar="S", help="seed for init and data order (default: 0)")
    g.add_argument("--eval-every", type=positive_int, metavar="N", help="steps between validation evaluations (default: 50)")
    g.add_argument("--eval-batches", type=positive_int, metavar="N", help="fixed validation batches per evaluation (default: 8)")
    g = p.add_argument_group("run")
    g.add_argument("--config", metavar="FILE", help="JSON or TOML file of config keys (flat, or [model]/[train] tables); flags override it")
    g.add_argument("--trust-code", action="store_true", help="allow an import path (pkg.mod:fn) as the activation in --config (or in the config.json of the run --resume continues): importing it runs that module's code (a flag's --act is always allowed)")
    g.add_argument("--device", choices=DEVICES, help="where to train (default: auto = cuda if available)")
    g.add_argument("--dtype", choices=DTYPES, help="bfloat16 = autocast on CUDA; CPU always float32 (default: float32)")
    g.add_argument("--compile", nargs="?", const="on", choices=COMPILE_CHOICES, metavar="WHEN", help=f"torch.compile the training forward: ~3-10%% faster steps after 5-25 s of compilation. auto = only runs of {COMPILE_AUTO_STEPS} steps or more, where it pays; on (what a bare --compile means); off (default: auto)")
    g.add_argument("--kernels", choices=KERNELS, help="how a gated FFN computes f(gate) * up and c_proj, the same losses each way (compile: up to float32 rounding): eager (module calls, what probes need) | fused (aten kernels that keep d + 2h floats per token instead of d + 4h) | compile (torch.compile'd kernels) | auto = compiled for CPU tensors of 32 MiB or more, fused below (default: auto)")
    g.add_argument("--threads", type=nonneg_int, metavar="N", help="torch CPU threads, 0 = torch's default (default: 0)")
    g.add_argument("--out", metavar="DIR", help="run folder for config.json, env.json, metrics.jsonl, model.safetensors, the tokenizer and the training state (default: none written)")
    g.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR from its last saved state (saved at every evaluation and on Ctrl-C), with its own config: the losses are those of a run never stopped")
    g.add_argument("--overwrite", action="store_true", help="let --out replace a run already in that folder (without it, an existing run is refused)")
    g.add_argument("--log", choices=("tb",), help="also log to TensorBoard: event files in the run folder's tb/ (needs --out and the tb extra); view with tensorboard --logdir DIR/tb")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace):
    from actlab.config import TrainConfig, load_config_file, merge

    overrides = load_config_file(args.config, trust_code=args.trust_code) if args.config else {}
    typed = {key: getattr(args, flag) for flag, key in TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    cfg = merge(TrainConfig(), overrides)
    return merge(cfg, typed)


def baseline_line(baselines: dict, val_loss: float | None) -> str:
    """One line: the corpus's count-model losses, and where the run's validation loss falls."""
    from actlab.data.baselines import ORDERS

    cells = ", ".join(f"{o} {baselines[o]:.4f}" for o in ORDERS)
    line = f"n-gram baselines on the validation split (nats/token, {baselines['smoothing']}): {cells}"
    if val_loss is not None:
        beaten = [o for o in ORDERS if val_loss < baselines[o]]
        line += f"; val loss {val_loss:.4f} beats " + (", ".join(beaten) if beaten else "none of them")
    return line


def _run_config(args: argparse.Namespace):
    """(config, run folder) of `actlab train`: from the flags, or with --resume from the run's
    own config.json (flags may repeat it, never change it)."""
    from pathlib import Path

    from actlab.config import merge
    from actlab.training.state import stored_config

    if not args.resume:
        cfg = config_from_args(args)  # every value checked, the config file's included
        if args.out is not None:
            check_out_dir(args.out)
            _check_new_run(Path(args.out), args.overwrite)
        return cfg, args.out
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        raise ActlabError("--resume DIR continues the run in DIR: leave out --out (or give the same folder)")
    if args.config or args.overwrite:
        raise ActlabError(f"--resume takes the run's own config; {'--config' if args.config else '--overwrite'} "
                          "does not go with it")
    typed = {key: getattr(args, flag) for flag, key in TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    return merge(stored_config(Path(args.resume), trust_code=args.trust_code), typed), args.resume


def _check_new_run(out, overwrite: bool) -> None:
    """Refuse to train into a folder that holds a run, unless told to replace it."""
    import json
    import shutil

    marks = [n for n in ("config.json", "metrics.jsonl", "summary.json") if (out / n).exists()]
    if not marks:
        return
    if overwrite:
        shutil.rmtree(out / "tb", ignore_errors=True)  # the old run's event files
        return
    how = ""
    try:
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        how = f" ({summary.get('outcome')} after {summary.get('steps')} steps)"
    except (OSError, ValueError, AttributeError):
        pass
    raise ActlabError(f"{out} holds a run already{how}: --resume {out} continues it, "
                      "--overwrite replaces it, or choose another --out")


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from actlab.training.loop import train

    cfg, out = _run_config(args)
    check_device(cfg.device)  # from the flag or the config file
    callbacks = ()
    if args.log == "tb":
        if out is None:
            raise ActlabError("--log tb writes into the run folder: give --out DIR")
        from actlab.training.tensorboard import TensorBoardLogger

        callbacks = (TensorBoardLogger(Path(out) / "tb"),)
    args.out = out
    args.work_started = True
    result = train(cfg, out, callbacks=callbacks, resume=bool(args.resume),
                   progress=not args.quiet and sys.stderr.isatty())
    first = result.history[0]["train_loss"] if result.history else float("nan")
    evals = [r for r in result.history if "val_loss" in r]
    vals = [r["val_loss"] for r in evals]
    print(f"act={cfg.model.act} params={result.n_params:,} outcome={result.outcome} steps={result.steps}")
    last = result.train_loss if result.train_loss is not None else float("nan")
    print(f"train loss {first:.4f} -> {last:.4f}", end="")
    if vals:  # rows count steps from 0: the row of step i is the state after i + 1 steps
        print(f"; val loss {vals[0]:.4f} (after step {evals[0]['step'] + 1}) -> {vals[-1]:.4f} "
              f"(after step {evals[-1]['step'] + 1})", end="")
    print(f"; {result.tokens_per_s:,.0f} tok/s; {result.seconds:.1f} s")
    if result.baselines:
        print(baseline_line(result.baselines, result.val_loss))
    if result.out_dir:
        print(f"run folder: {result.out_dir}")
    if result.outcome == "interrupted":  # Ctrl-C or SIGTERM: saved, and the shell is told
        print(f"actlab train: interrupted after step {result.steps}; what it computed is saved"
              + (f" in {result.out_dir}; actlab train --resume {result.out_dir} continues it"
                 if result.out_dir else ""), file=sys.stderr)
        return 130
    return 0

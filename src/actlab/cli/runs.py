"""`actlab sample`: text from a trained run folder."""

from __future__ import annotations

import argparse

from actlab.cli.args import check_device, nonneg_float, nonneg_int, positive_int


def register(sub) -> None:
    from actlab.config import DEVICES

    p = sub.add_parser("sample", help="generate text from a run folder written by `actlab train --out`",
                       description="Load the model and tokenizer of DIR (written by `actlab train --out DIR`) "
                                   "and print the prompt followed by the text the model generates after it.")
    p.add_argument("dir", metavar="DIR", help="a run folder written by actlab train --out")
    p.add_argument("--prompt", default="", metavar="TEXT", help="text to continue (default: none: the model starts after a newline)")
    p.add_argument("--tokens", type=positive_int, default=200, metavar="N", help="tokens to generate (default: 200)")
    p.add_argument("--temperature", type=nonneg_float, default=0.8, metavar="T", help="divides the scores before the softmax: below 1 sharper, above 1 flatter, 0 = always the most likely token (default: 0.8)")
    p.add_argument("--top-k", type=positive_int, metavar="K", help="draw among the K most likely tokens only (default: all of them)")
    p.add_argument("--seed", type=nonneg_int, default=0, metavar="S", help="seed of the draws: the same seed gives the same text (default: 0)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where the model runs; auto = cuda if available (default: cpu)")
    p.add_argument("--trust-code", action="store_true", help="allow a run whose activation is an import path (pkg.mod:fn): building its model imports that module")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace) -> int:
    from actlab.runs import load_run, sample

    check_device(args.device)
    run = load_run(args.dir, device=args.device, trust_code=args.trust_code)
    args.work_started = True  # sampling writes nothing: an interruption loses nothing
    text = sample(run, prompt=args.prompt, tokens=args.tokens, temperature=args.temperature,
                  seed=args.seed, top_k=args.top_k)
    print(args.prompt + text)
    return 0

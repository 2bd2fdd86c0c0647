"""`actlab export`: a run folder as a Hugging Face checkpoint."""

from __future__ import annotations

import argparse

TARGETS = ("hf",)


def register(sub) -> None:
    p = sub.add_parser("export", help="write a run folder as a Hugging Face GPT-2 checkpoint",
                       description="Write the model of DIR (written by `actlab train --out DIR`) to OUT as a "
                                   "checkpoint that transformers.GPT2LMHeadModel.from_pretrained(OUT) loads, with "
                                   "the run's tokenizer.json when it has one. Needs transformers: "
                                   "pip install 'actlab[hf]'. Only GPT-2's architecture exports: LayerNorm, softmax "
                                   "attention and head, a dense MLP with an activation that transformers names.")
    p.add_argument("dir", metavar="DIR", help="a run folder written by actlab train --out")
    p.add_argument("--to", choices=TARGETS, default="hf", help="the format to write (default: hf)")
    p.add_argument("--out", required=True, metavar="OUT", help="the folder to write; it must not exist or be empty")
    p.add_argument("--overwrite", action="store_true", help="replace OUT when it holds an earlier export (never other files)")
    p.add_argument("--trust-code", action="store_true", help="allow a run whose activation is an import path (pkg.mod:fn): building its model imports that module")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    import json

    from actlab.hf import EXPORT_FILE, export_run

    out = export_run(args.dir, args.out, overwrite=args.overwrite, trust_code=args.trust_code)
    mapping = json.loads((out / EXPORT_FILE).read_text(encoding="utf-8"))["mapping"]
    print(f"exported {args.dir} to {out} as {mapping}")
    print(f"load it with transformers.GPT2LMHeadModel.from_pretrained({str(out)!r}); "
          f"{EXPORT_FILE} records the run it came from")
    return 0

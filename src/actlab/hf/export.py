"""Write an actlab model or run folder as a Hugging Face checkpoint folder.

The folder is what GPT2LMHeadModel.save_pretrained writes (config.json, model.safetensors,
generation_config.json), plus the run's tokenizer when it is a Hugging Face tokenizer.json (BPE
or a user's file; a char or byte tokenizer has no Hugging Face form), plus EXPORT_FILE, which
says which actlab run and config it came from. It is built in a hidden folder beside OUT and
renamed into place at the end, so an interrupted export leaves no half-written OUT.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from actlab.errors import ActlabError
from actlab.files.atomic import write_bytes, write_json
from actlab.files.schema import versioned
from actlab.hf.convert import hf_mapping, to_hf_gpt2
from actlab.nn.gpt import GPT
from actlab.version import __version__

EXPORT_FILE = "actlab_export.json"
TOKENIZER_FILE = "tokenizer.json"


def export_model(model: GPT, out_dir: str | os.PathLike, *, overwrite: bool = False,
                 source: dict | None = None, tokenizer_json: bytes | None = None) -> Path:
    """Save `model` as a GPT2LMHeadModel checkpoint in `out_dir`; returns its path.

    `source` (JSON-safe) is recorded in EXPORT_FILE beside the config; `tokenizer_json` is the
    bytes of a Hugging Face tokenizer.json to ship with it. An `out_dir` that exists must be
    empty, or with `overwrite` a previous export (never another folder's files)."""
    out = Path(out_dir).expanduser()
    _check_out(out, overwrite)
    mapping = hf_mapping(model.config)  # refused before anything is written
    hf = to_hf_gpt2(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        with _quiet():
            hf.save_pretrained(tmp, safe_serialization=True)
        if tokenizer_json is not None:
            write_bytes(tmp / TOKENIZER_FILE, tokenizer_json)
            write_json(tmp / "tokenizer_config.json", {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": model.config.block_size})
        write_json(tmp / EXPORT_FILE, versioned({
            "actlab_version": __version__,
            "architecture": "GPT2LMHeadModel",
            "mapping": mapping,
            "model_config": dataclasses.asdict(model.config),
            "tokenizer": TOKENIZER_FILE if tokenizer_json is not None else None,
            "source": source,
        }))
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def export_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False,
               trust_code: bool = False) -> Path:
    """Export the run folder `run_dir` (written by actlab train --out) to `out_dir`."""
    from actlab.runs import load_run

    out = Path(out_dir).expanduser()
    _check_out(out, overwrite)  # before the run is loaded: the cheap mistakes first
    run = load_run(run_dir, trust_code=trust_code)
    hf_mapping(run.config.model)
    tok_file = run.path / TOKENIZER_FILE
    source = {"run": str(run.path.resolve()), "config_hash": run.config.hash(),
              "tokenizer": run.config.tokenizer, "config": run.config.to_dict(),
              "summary_outcome": (run.summary or {}).get("outcome")}
    tokenizer_json = tok_file.read_bytes() if tok_file.is_file() else None
    return export_model(run.model, out, overwrite=overwrite, source=source,
                        tokenizer_json=tokenizer_json)


@contextlib.contextmanager
def _quiet():
    """No transformers progress bar for a one-file save (restored as it was afterwards)."""
    from transformers.utils import logging

    was = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            logging.enable_progress_bar()


def _check_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ActlabError(f"{out} exists and is not a folder: choose another output folder")
    if not any(out.iterdir()):
        return
    if not (out / EXPORT_FILE).is_file():
        raise ActlabError(f"{out} is not empty and is not an actlab export: choose another "
                          "output folder (--overwrite replaces only a previous export)")
    if not overwrite:
        raise ActlabError(f"{out} already holds an export: pass --overwrite to replace it")


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished `tmp` to `out`; a previous export there goes only once it is in place."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

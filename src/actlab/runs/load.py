"""Rebuild what `actlab train --out DIR` trained from DIR alone: the config, the weights and
the tokenizer, each checked against the others, each problem one line that says what to do.

A run folder written before actlab saved tokenizers has no tokenizer file. For the char, byte
and bpe kinds the tokenizer is rebuilt from the corpus config.json names, exactly as training
built it (data.prepare.training_tokenizer: same split, same recipe, the BPE cache reused),
provided the corpus is still there with the hash env.json recorded; nothing is written into
the folder. Otherwise the error names the corpus, and training again writes the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from actlab.config import TOKENIZERS, TrainConfig
from actlab.data.prepare import training_tokenizer
from actlab.data.tokenizer import Tokenizer
from actlab.data.tokenizer_files import HF_FILE, load_tokenizer, tokenizer_path
from actlab.errors import ActlabError
from actlab.nn.gpt import GPT
from actlab.training.checkpoint import SUMMARY, WEIGHTS
from actlab.training.env import resolve_device
from actlab.training.state import CONFIG, config_dict

ENV = "env.json"


@dataclass
class LoadedRun:
    model: GPT  # in eval mode, on the device asked for
    tokenizer: Tokenizer
    config: TrainConfig  # as the run trained: model.vocab_size is the tokenizer's
    summary: dict | None  # summary.json (None if absent or unreadable)
    path: Path


def load_run(path: str | os.PathLike, device: str = "cpu", *, trust_code: bool = False) -> LoadedRun:
    """Load the run folder ``path`` onto ``device`` (cpu, cuda, mps or auto).

    An activation given as an import path (pkg.mod:fn) in config.json runs that module's code
    when the model is built, so it is refused unless ``trust_code``. A tokenizer given by path
    (``--tokenizer FILE``) that has moved since is read from the folder's own copy, which
    config.tokenizer then names. Building the model leaves torch's global random state as it
    was. Every problem is a one-line ActlabError.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise ActlabError(f"{path} {what}: name a run folder written by actlab train --out")
    summary = _read_json(folder / SUMMARY)
    cfg = _config(folder, trust_code)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ActlabError(f"{folder} has no {WEIGHTS}: the run may not have finished "
                          f"({_ending(summary)})")
    tok = _tokenizer(folder, cfg)
    if tok.vocab_size != cfg.model.vocab_size:
        raise ActlabError(f"the tokenizer in {folder} has {tok.vocab_size} ids but the model was "
                          f"trained with vocab_size {cfg.model.vocab_size} (config.json)")
    model = _model(weights, cfg, resolve_device(device))
    return LoadedRun(model=model, tokenizer=tok, config=cfg, summary=summary, path=folder)


def _read_json(path: Path) -> dict | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def _ending(summary: dict | None) -> str:
    if summary is None:
        return f"no {SUMMARY} either: it may still be running, or was killed"
    outcome = summary.get("outcome")
    error = f": {summary['error']}" if summary.get("error") else ""
    return f"{SUMMARY} says outcome {outcome!r}{error}"


def _config(folder: Path, trust_code: bool) -> TrainConfig:
    where = folder / CONFIG
    raw = config_dict(folder, trust_code)
    given = raw.get("tokenizer")
    if isinstance(given, str) and given not in TOKENIZERS and not os.path.isfile(
            os.path.expanduser(given)) and (folder / HF_FILE).is_file():
        raw["tokenizer"] = str(folder / HF_FILE)  # the file moved: the run keeps its own copy
    try:
        return TrainConfig.from_dict(raw)
    except ActlabError as err:
        raise ActlabError(f"{where}: {err}") from None


def _tokenizer(folder: Path, cfg: TrainConfig) -> Tokenizer:
    kind = cfg.tokenizer if cfg.tokenizer in TOKENIZERS else "file"
    if tokenizer_path(folder) is not None:
        return load_tokenizer(folder, kind)
    env = _read_json(folder / ENV) or {}
    corpus = env.get("corpus", "unknown (no env.json)")
    old = (f"{folder} has no tokenizer file: it was trained by an older actlab, on the corpus "
           f"{corpus!r}")
    if kind == "file":
        raise ActlabError(f"{old}; train it again with --tokenizer {cfg.tokenizer}")
    again = (f"train it again with --tokenizer {kind}"
             f"{' --data ' + cfg.data if cfg.data else ''} to write one")
    try:
        tok, text_hash = training_tokenizer(cfg.data, kind, cfg.bpe_vocab, cfg.val_fraction)
    except ActlabError as err:
        raise ActlabError(f"{old}, which cannot be read to rebuild it ({err}); {again}") from None
    if env.get("corpus_hash") != text_hash:
        raise ActlabError(f"{old}, whose text has changed since (its hash is not env.json's), "
                          f"so its tokenizer cannot be rebuilt; {again}")
    return tok


def _model(weights: Path, cfg: TrainConfig, device: torch.device) -> GPT:
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    with torch.random.fork_rng(devices=[]):  # the init's draws are overwritten: keep the caller's
        model = GPT(cfg.model)
    try:
        # load_model accepts the file's single copy of tied tensors (wte is lm_head)
        load_model(model, weights, strict=True)
    except SafetensorError as err:
        raise ActlabError(f"{weights} cannot be read as safetensors: {err}") from None
    except RuntimeError as err:  # missing, unexpected or mis-sized tensors
        detail = " ".join(str(err).split())
        raise ActlabError(f"{weights} does not match {CONFIG} ({cfg.model.size_fields()}): "
                          f"{detail[:300]}") from None
    return model.to(device).eval()

"""A run folder's files: config.json and env.json before training, model.safetensors and
summary.json after it (metrics.jsonl is written as the run goes, by training.metrics).

Every file here is written atomically (actlab.files.atomic): a kill or a full disk leaves
the previous file or none, never half of one. summary.json is written last and says how the
run ended: "completed", "diverged", "interrupted", or "error" with the error's one line
(error.txt beside it holds the traceback). A new run in a folder first removes what the
previous one left at its end, so the folder never pairs a new config with an old summary,
weights or error.
"""

from __future__ import annotations

import contextlib
import traceback
from collections import defaultdict
from pathlib import Path

import torch

from actlab.config import TrainConfig
from actlab.data import DataBundle
from actlab.files.atomic import write_bytes, write_json, write_text
from actlab.files.schema import versioned
from actlab.nn.gpt import GPT
from actlab.training.env import environment
from actlab.training.metrics import RunResult

WEIGHTS = "model.safetensors"
SUMMARY = "summary.json"
ERROR = "error.txt"


def write_headers(out: Path, cfg: TrainConfig, data: DataBundle, compiled: bool,
                  device: torch.device) -> None:
    """Create the folder, clear what an earlier run left at its end, and write the run's
    config, what it runs on (corpus included) and its tokenizer (tokenizer.json or vocab.json)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (SUMMARY, ERROR, WEIGHTS):
        (out / name).unlink(missing_ok=True)
    write_text(out / "config.json", cfg.to_json() + "\n")
    meta = {"corpus": data.name, "corpus_hash": data.text_hash, "compile": compiled,
            **environment(device)}
    write_json(out / "env.json", versioned(meta))
    from actlab.data.tokenizer_files import save_tokenizer  # replaces an earlier run's tokenizer file

    save_tokenizer(data.tokenizer, out)  # the folder alone rebuilds the text interface (runs.load)


def write_results(out: Path, model: GPT, cfg: TrainConfig, result: RunResult) -> None:
    """The trained weights, then summary.json: the result without its per-step history
    (non-finite losses as null)."""
    save_weights(model, out / WEIGHTS, cfg)
    write_json(out / SUMMARY, versioned(result.summary()))


def mark_failed(out: Path, err: BaseException, steps: int) -> None:
    """Record a run that raised: summary.json with outcome "error" and the error's one line,
    error.txt with the traceback. Called while `err` propagates, so it never raises itself:
    after a full disk these writes fail too, and the first error is the one to report."""
    line = one_line(err)
    with contextlib.suppress(OSError):
        write_json(out / SUMMARY, versioned({"outcome": "error", "error": line, "steps": steps}))
    with contextlib.suppress(OSError):
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        write_text(out / ERROR, f"{line}\n\n{text}")


def one_line(err: BaseException) -> str:
    """'Type: first line of the message'."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def save_weights(model: GPT, path: Path, cfg: TrainConfig) -> None:
    """The model's tensors as safetensors, each shared tensor once (wte is lm_head).

    Serialised in memory and written by actlab.files.atomic, so that a full disk raises
    OSError (errno ENOSPC) like every other write, and leaves no partial file.
    """
    from safetensors.torch import save

    tensors, metadata = weights_to_save(model)
    write_bytes(path, save(tensors, metadata={"config": cfg.to_json(), **metadata}))


def weights_to_save(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors by name, {dropped name: kept name}): of names that hold the very same tensor
    (tied weights), the first in sorted order is kept and the others are named in metadata,
    as safetensors.torch.save_model does; load_model accepts either name."""
    state = model.state_dict()
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name, t in state.items():
        key = ((t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
                t.stride(), t.dtype) if t.numel() else ("empty", name))
        groups[key].append(name)
    tensors, dropped = {}, {}
    for names in groups.values():
        kept, *others = sorted(names)
        tensors[kept] = state[kept].contiguous()
        dropped.update({other: kept for other in others})
    return tensors, dropped

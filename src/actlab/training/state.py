"""What `actlab train --resume` continues from: a run folder's `state/checkpoint.pt`.

A run with a folder saves its whole training state after every evaluation, and once more
when a stop signal ends it between two steps: the weights, the optimizer's moments and step
counts, the batcher's generator and position, torch's global generator (dropout) and the
number of steps taken. The learning-rate schedule is a function of the step alone
(training.schedule.lr_at), so the step restores it. Resumed from here, a run computes the
same losses, bitwise, as the run that was never stopped (tests/test_resume.py).

The file is one torch.save archive written atomically, read back with `weights_only=True`
(tensors, numbers and strings only: loading it runs no code). A run that completes or
diverges has nothing left to continue, so its state is removed; one that fails keeps the
state of its last evaluation.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from actlab.config import TrainConfig, check_code_trust
from actlab.errors import ActlabError
from actlab.files.atomic import write_bytes

STATE_DIR = "state"
CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
STATE_VERSION = 1


def checkpoint_path(out: Path) -> Path:
    return Path(out) / STATE_DIR / CHECKPOINT


def save_state(out: Path, *, step: int, config_hash: str, model: torch.nn.Module,
               optimizer: torch.optim.Optimizer, batcher) -> None:
    """Everything the steps after `step` (the number of steps taken) depend on."""
    state = {
        "state_version": STATE_VERSION,
        "step": step,
        "config_hash": config_hash,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "batcher": batcher.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = checkpoint_path(out)
    path.parent.mkdir(exist_ok=True)
    write_bytes(path, buffer.getvalue())


def load_state(out: Path, config_hash: str) -> dict:
    """The saved state of the run in `out`, checked against the config it must continue."""
    path = checkpoint_path(out)
    if not path.is_file():
        raise ActlabError(f"{out}: no training state to resume from ({STATE_DIR}/{CHECKPOINT} is "
                          "saved at each evaluation; this run stopped before its first, or it "
                          "completed)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a damaged or foreign file, whatever torch raises
        raise ActlabError(f"{path}: not a readable training state ({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("state_version") != STATE_VERSION:
        raise ActlabError(f"{path}: not a training state this actlab writes")
    if state["config_hash"] != config_hash:
        raise ActlabError(f"{path}: saved by a run of another config (hash {state['config_hash']}, "
                          f"this one {config_hash})")
    return state


def restore(state: dict, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            batcher) -> int:
    """Put the saved state into freshly built objects; returns the steps already taken."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    batcher.load_state_dict(state["batcher"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"])


def clear_state(out: Path) -> None:
    shutil.rmtree(Path(out) / STATE_DIR, ignore_errors=True)


@dataclass
class ResumePoint:
    """Where a resumed run goes on from: its saved state and the metrics rows before it."""

    state: dict
    rows: list[dict]
    seconds: float


def resume_point(out: Path | None, cfg: TrainConfig) -> ResumePoint:
    """The saved state of the run in `out` and its first `step` metrics rows, checked against
    `cfg`: resuming continues a run as it was configured, never another one."""
    if out is None:
        raise ActlabError("resuming a run needs its folder (out_dir)")
    stored = stored_config(out)
    if stored.hash() != cfg.hash():
        changed = [k for k, v in _flat(cfg).items() if _flat(stored).get(k) != v]
        raise ActlabError(f"{out} holds a run of another config ({', '.join(changed[:5])} differ): "
                          "resuming continues a run as it was configured")
    state = load_state(out, cfg.hash())
    steps = int(state["step"])
    rows = _read_rows(out / "metrics.jsonl")[:steps]
    if len(rows) < steps or any(row.get("step") != i for i, row in enumerate(rows)):
        raise ActlabError(f"{out}/metrics.jsonl does not hold the {steps} steps its saved state "
                          "took: the run folder was changed")
    return ResumePoint(state, rows, float(rows[-1].get("time_s") or 0.0) if rows else 0.0)


def config_dict(folder: Path, trust_code: bool = True) -> dict:
    """The mapping config.json of the run in `folder` holds, without its schema_version (one-line
    errors). It was read from a file: an activation that is an import path is refused unless
    `trust_code`, as a --config file's is."""
    where = Path(folder) / CONFIG
    if not where.is_file():
        raise ActlabError(f"{folder} has no {CONFIG}: not a run folder written by actlab train --out")
    try:
        raw = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ActlabError(f"{where} cannot be read as JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ActlabError(f"{where}: the top level must be an object")
    raw.pop("schema_version", None)
    check_code_trust(raw, str(where), trust_code)
    return raw


def stored_config(out: Path, trust_code: bool = True) -> TrainConfig:
    """The TrainConfig of the run in `out` (one-line errors; see config_dict)."""
    raw = config_dict(out, trust_code)
    try:
        return TrainConfig.from_dict(raw)
    except ActlabError as err:
        raise ActlabError(f"{Path(out) / CONFIG}: {err}") from None


def _read_rows(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def _flat(cfg: TrainConfig) -> dict:
    d = cfg.to_dict()
    return {**d.pop("model"), **d}

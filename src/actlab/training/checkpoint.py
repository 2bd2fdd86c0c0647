"""A run folder's files: config.json and env.json before training, model.safetensors and
summary.json after it (metrics.jsonl is written as the run goes, by training.metrics)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from actlab.config import TrainConfig
from actlab.data import DataBundle
from actlab.nn.gpt import GPT
from actlab.training.env import environment
from actlab.training.metrics import RunResult


def write_headers(out: Path, cfg: TrainConfig, data: DataBundle, compiled: bool,
                  device: torch.device) -> None:
    """Create the folder; write the run's config and what it runs on, corpus included."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(cfg.to_json() + "\n")
    meta = {"corpus": data.name, "corpus_hash": data.text_hash, "compile": compiled,
            **environment(device)}
    (out / "env.json").write_text(json.dumps(meta, indent=2) + "\n")


def write_results(out: Path, model: GPT, cfg: TrainConfig, result: RunResult) -> None:
    """The trained weights, then summary.json: the result without its per-step history."""
    save_weights(model, out / "model.safetensors", cfg)
    summary = {k: v for k, v in asdict(result).items() if k != "history"}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def save_weights(model: GPT, path: Path, cfg: TrainConfig) -> None:
    from safetensors.torch import save_model

    # save_model drops the tied duplicate (wte is lm_head) instead of failing on it.
    save_model(model, str(path), metadata={"config": cfg.to_json()})

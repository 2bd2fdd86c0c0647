"""Shared fixtures: tiny sizes so every test runs in seconds on a 2-core CPU."""

import pytest
import torch

from actlab.config import ModelConfig, TrainConfig


@pytest.fixture(autouse=True)
def _one_thread():
    # One thread: CPU reductions are bitwise reproducible for a given count, and tiny
    # models gain nothing from a second thread (OpenMP spin-waits cost more than they save).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(**kw) -> ModelConfig:
    base = dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
    base.update(kw)
    return ModelConfig(**base)


def tiny_train(**kw) -> TrainConfig:
    model_kw = {k: kw.pop(k) for k in list(kw) if k in ModelConfig.__dataclass_fields__}
    base = dict(steps=30, batch_size=8, eval_every=10, eval_batches=2, warmup_steps=5, lr=3e-3,
                device="cpu", threads=1)
    base.update(kw)
    return TrainConfig(model=tiny_model(**model_kw), **base)

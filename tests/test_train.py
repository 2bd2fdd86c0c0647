"""Training loop: determinism, learning, divergence as an outcome, run folder contents."""

import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_model

from actlab.config import ModelConfig, TrainConfig
from actlab.data import prepare
from actlab.nn.gpt import GPT
from actlab.training.loop import lr_at, train

from conftest import tiny_train

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, must be in want of a wife. ") * 60


class ThreadsAtStart:
    """A callback that notes torch's thread count as training starts."""

    def __init__(self):
        self.seen = []

    def before_train(self, model):
        self.seen.append(torch.get_num_threads())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bundle(corpus):
    return prepare(str(corpus), "char", block_size=16)


def test_same_seed_gives_bitwise_identical_losses(bundle):
    a = train(tiny_train(seed=3), data=bundle, progress=False)
    b = train(tiny_train(seed=3), data=bundle, progress=False)
    c = train(tiny_train(seed=4), data=bundle, progress=False)
    losses = lambda r: [row["train_loss"] for row in r.history]  # noqa: E731
    assert losses(a) == losses(b)
    assert [r.get("val_loss") for r in a.history] == [r.get("val_loss") for r in b.history]
    assert losses(a) != losses(c)


@pytest.mark.parametrize("act", ["sigmoid", "gelu", "swiglu"])
def test_training_lowers_validation_loss(bundle, act):
    result = train(tiny_train(act=act, steps=60, eval_every=20), data=bundle, progress=False)
    vals = [r["val_loss"] for r in result.history if "val_loss" in r]
    assert result.outcome == "completed"
    assert len(vals) == 3
    assert vals[0] > vals[1] > vals[2]
    assert vals[-1] < math.log(bundle.vocab_size) - 0.4


def test_divergence_is_an_outcome_not_a_crash(bundle):
    cfg = tiny_train(lr=1e4, grad_clip=0.0, warmup_steps=0, steps=40, act="relu")
    result = train(cfg, data=bundle, progress=False)
    assert result.outcome == "diverged"
    assert result.steps < 40
    assert not math.isfinite(result.history[-1]["train_loss"])


def test_run_folder_contents(bundle, tmp_path):
    cfg = tiny_train(steps=12, eval_every=6)
    result = train(cfg, tmp_path / "run", data=bundle, progress=False)
    run = tmp_path / "run"
    saved = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    ran = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=bundle.vocab_size))
    assert saved.to_dict() == ran.to_dict()  # the config as run: the data's vocabulary
    env = json.loads((run / "env.json").read_text())
    for key in ("actlab", "torch", "threads", "device", "git_revision", "platform", "code_hash",
                "cpu", "cpu_capability"):
        assert key in env
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(12))
    assert [r["step"] for r in rows if "val_loss" in r] == [5, 11]
    assert all("train_loss" in r and "grad_norm" in r for r in rows)
    stamps = [r["time_s"] for r in rows]  # seconds since the run started, one per CPU step
    assert 0 < stamps[0] and all(a < b for a, b in zip(stamps, stamps[1:]))
    # weights reload into a fresh model and give the same loss as the run's last evaluation
    model = GPT(saved.model)
    load_model(model, str(run / "model.safetensors"))
    assert model.lm_head.weight is model.transformer.wte.weight
    summary = json.loads((run / "summary.json").read_text())
    assert summary["outcome"] == "completed" and summary["val_loss"] == result.val_loss
    assert stamps[-1] <= summary["seconds"]


def test_train_leaves_the_callers_config_alone(bundle, tmp_path):
    default_vocab = ModelConfig().vocab_size
    assert bundle.vocab_size != default_vocab
    cfg = tiny_train(steps=3, eval_every=3, vocab_size=default_vocab)
    before = cfg.to_dict()
    train(cfg, tmp_path / "run", data=bundle, progress=False)
    assert cfg.to_dict() == before and cfg.model.vocab_size == default_vocab
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["vocab_size"] == bundle.vocab_size


def test_train_restores_the_callers_thread_count(bundle):
    class Boom:
        def before_train(self, model):
            raise RuntimeError("boom")

    outer = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        threads = ThreadsAtStart()
        train(tiny_train(steps=2, eval_every=2, threads=1), data=bundle, progress=False,
              callbacks=(threads,))
        assert threads.seen == [1] and torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="boom"):
            train(tiny_train(steps=2, threads=1), data=bundle, progress=False, callbacks=(Boom(),))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(outer)


def test_grad_norm_is_recorded_before_clipping(bundle):
    result = train(tiny_train(steps=5, grad_clip=1e-3), data=bundle, progress=False)
    assert all(r["grad_norm"] > 1e-3 for r in result.history)


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=110, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)  # half way down the cosine
    assert lr_at(110, cfg) == pytest.approx(0.1)


def test_sgd_runs_and_learns(bundle):
    result = train(tiny_train(optimizer="sgd", momentum=0.9, lr=0.3, steps=60, eval_every=20),
                   data=bundle, progress=False)
    vals = [r["val_loss"] for r in result.history if "val_loss" in r]
    assert vals[-1] < vals[0]


@pytest.mark.slow
def test_bundled_corpus_run_learns():
    cfg = tiny_train(steps=80, eval_every=40, block_size=32, n_embd=48, threads=2)
    cfg.data = None
    threads = ThreadsAtStart()
    result = train(cfg, progress=False, callbacks=(threads,))
    vals = [r["val_loss"] for r in result.history if "val_loss" in r]
    assert vals[-1] < vals[0] and vals[-1] < 3.0
    assert threads.seen == [2]  # torch threads come from the config while the run lasts

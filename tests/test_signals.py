"""Ctrl-C and SIGTERM during training: the run ends as "interrupted" with metrics, weights and
summary on disk, a second signal does not cut the saving short, and the handlers are the
caller's again afterwards."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_model

from actlab.config import TrainConfig
from actlab.data import prepare
from actlab.nn.gpt import GPT
from actlab.training import checkpoint
from actlab.training.loop import train

from conftest import tiny_train

TEXT = "Now is the winter of our discontent made glorious summer by this sun of York. " * 40
REPO = Path(__file__).resolve().parents[1]


def _strict(name):
    raise ValueError(f"not strict JSON: {name}")


def strict_lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line, parse_constant=_strict) for line in text.splitlines()]


def assert_interrupted_folder(run: Path) -> dict:
    """summary.json says interrupted, metrics.jsonl is strict JSON line by line with one row
    per step taken, and the weights load into a model built from config.json."""
    summary = json.loads((run / "summary.json").read_text(), parse_constant=_strict)
    rows = strict_lines(run / "metrics.jsonl")
    assert summary["outcome"] == "interrupted"
    assert summary["steps"] == len(rows) >= 1
    assert [r["step"] for r in rows] == list(range(len(rows)))
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    model = GPT(cfg.model)
    load_model(model, str(run / "model.safetensors"))
    assert not (run / "error.txt").exists()
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))
    return summary


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bundle(corpus):
    return prepare(str(corpus), "char", block_size=8)


class SignalAt:
    """A callback that sends this process `signals` once `after_<where>` reaches `step`."""

    def __init__(self, step, *signals, where="step"):
        self.step, self.signals, self.where = step, signals, where

    def _fire(self, step):
        if step == self.step:
            for signum in self.signals:
                os.kill(os.getpid(), signum)

    def after_step(self, step, model):
        if self.where == "step":
            self._fire(step)

    def after_backward(self, step, model):
        if self.where == "backward":
            self._fire(step)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_run_after_its_step_with_everything_saved(bundle, tmp_path, signum):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    result = train(tiny_train(steps=50, n_layer=1, block_size=8), tmp_path / "run", data=bundle,
                   progress=False, callbacks=(SignalAt(3, signum),))
    assert result.outcome == "interrupted"
    assert result.steps == 4  # the step during which it came is finished and kept
    summary = assert_interrupted_folder(tmp_path / "run")
    assert summary["steps"] == 4 and summary["train_loss"] == result.history[-1]["train_loss"]
    assert {s: signal.getsignal(s) for s in before} == before  # the caller's handlers again


def test_a_second_signal_stops_the_step_at_once_and_still_saves(bundle, tmp_path):
    # both arrive inside step 2, before its update: the second one cuts the step short
    result = train(tiny_train(steps=50, n_layer=1, block_size=8), tmp_path / "run", data=bundle,
                   progress=False, callbacks=(SignalAt(2, signal.SIGINT, signal.SIGINT, where="backward"),))
    assert result.outcome == "interrupted" and result.steps == 2
    assert_interrupted_folder(tmp_path / "run")


def test_signals_during_the_save_wait_for_it_then_stop_the_caller(bundle, tmp_path, monkeypatch):
    real = checkpoint.save_weights

    def save_then_signalled(*args):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        real(*args)

    monkeypatch.setattr(checkpoint, "save_weights", save_then_signalled)
    with pytest.raises(KeyboardInterrupt):  # the run had completed: the stop request comes after
        train(tiny_train(steps=3, n_layer=1, block_size=8), tmp_path / "run", data=bundle, progress=False)
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["outcome"] == "completed" and summary["steps"] == 3
    assert len(strict_lines(run / "metrics.jsonl")) == 3 and (run / "model.safetensors").is_file()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_an_ignored_sigint_stays_ignored(bundle):
    # the sweep's worker processes ignore SIGINT (their parent handles Ctrl-C): train keeps it so
    seen = []

    class Look:
        def after_step(self, step, model):
            seen.append(signal.getsignal(signal.SIGINT))

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = train(tiny_train(steps=2, n_layer=1, block_size=8), data=bundle, progress=False,
                       callbacks=(Look(), SignalAt(0, signal.SIGINT)))
        assert result.outcome == "completed" and result.steps == 2
        assert seen == [signal.SIG_IGN, signal.SIG_IGN]
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


# -- the command line, in a process of its own --------------------------------------------


def _start_train(corpus: Path, run: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "ACTLAB_CACHE": str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "actlab", "train", "--data", str(corpus), "--steps", "200000",
            "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8",
            "--batch-size", "2", "--eval-every", "100000", "--eval-batches", "1", "--threads", "1",
            "--device", "cpu", "--compile", "off", "--out", str(run), "--quiet"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_a_step(proc: subprocess.Popen, metrics: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.is_file() and metrics.read_text().count("\n") >= 1:
            return
        if proc.poll() is not None:
            pytest.fail(f"train ended before its first step: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no step was written in time")


@pytest.mark.slow
@pytest.mark.parametrize("signals", [(signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)],
                         ids=["sigterm", "two-sigints-5ms-apart"])
def test_cli_train_keeps_an_interrupted_run(corpus, tmp_path, signals):
    run = tmp_path / "run"
    proc = _start_train(corpus, run, tmp_path / "cache")
    try:
        _wait_for_a_step(proc, run / "metrics.jsonl")
        for i, signum in enumerate(signals):
            if i:
                time.sleep(0.005)
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = assert_interrupted_folder(run)
    assert summary["steps"] < 200000
    assert "outcome=interrupted" in out and "Traceback" not in err, (out, err)
    assert proc.returncode == 130, (out, err)  # as for Ctrl-C anywhere else, SIGTERM included

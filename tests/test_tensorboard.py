"""TensorBoardLogger: the event files it writes hold the metrics.jsonl rows and the probes'
records, read back with TensorBoard's own EventAccumulator."""

import json
import sys
import time

import numpy as np
import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from actlab.config import ModelConfig, TrainConfig
from actlab.data import prepare
from actlab.errors import ActlabError
from actlab.probes import GradNormProbe, attach
from actlab.training import train
from actlab.training.tensorboard import TensorBoardLogger

METRIC_TAGS = {"train/loss", "train/lr", "train/grad_norm", "val/loss", "perf/tokens_per_s"}


def _events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    return acc


def _points(acc, tag) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _f32(x) -> float:
    return float(np.float32(x))


class _Seen(TensorBoardLogger):
    """The logger, keeping what the trainer handed it (tokens_per_s is read from the clock
    at each call, so another callback would see other values)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.metrics = {}

    def on_metrics(self, step, metrics):
        self.metrics[step] = dict(metrics)
        super().on_metrics(step, metrics)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus") / "text.txt"
    corpus.write_text("The quick brown fox jumps over the lazy dog. " * 80, encoding="utf-8")
    return prepare(str(corpus), "char", block_size=16)


def _cfg() -> TrainConfig:
    return TrainConfig(model=ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16), steps=6,
                       eval_every=3, eval_batches=1, batch_size=4, compile="off", device="cpu",
                       threads=1)


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    """One tiny run (6 steps, evaluations after steps 2 and 5) with the logger, placed before
    the probes in the callbacks, and the gradient-norm probe alone (the cheapest)."""
    root = tmp_path_factory.mktemp("tb")
    with attach(grad=True, acts=False, sign=False, path=False) as probes:
        seen = _Seen(root / "out" / "tb", probes=probes)
        train(_cfg(), root / "out", data=data, progress=False, callbacks=(seen, probes))
    return root / "out" / "tb", _rows(root / "out"), probes, seen


def test_metrics_rows_are_the_scalars_at_their_steps(run):
    log_dir, rows, _, seen = run
    assert len(list(log_dir.glob("events.out.tfevents.*"))) == 1
    acc = _events(log_dir)
    assert METRIC_TAGS <= set(acc.Tags()["scalars"])
    assert [r["step"] for r in rows] == list(range(6))
    for tag, key in (("train/loss", "train_loss"), ("train/lr", "lr"), ("train/grad_norm", "grad_norm")):
        assert _points(acc, tag) == [(r["step"], _f32(r[key])) for r in rows], tag
    evaluated = [(r["step"], _f32(r["val_loss"])) for r in rows if "val_loss" in r]
    assert [s for s, _ in evaluated] == [2, 5]
    assert _points(acc, "val/loss") == evaluated
    speeds = [(s, _f32(m["tokens_per_s"])) for s, m in sorted(seen.metrics.items())
              if m["tokens_per_s"] > 0]
    assert speeds and _points(acc, "perf/tokens_per_s") == speeds
    assert all(v > 0 for _, v in speeds)


def test_probe_records_become_per_layer_scalars(run):
    log_dir, _, probes, _ = run
    acc = _events(log_dir)
    probe_tags = {t for t in acc.Tags()["scalars"] if t.startswith("probe/")}
    history = probes.history()  # rows {"step", "grad/<layer>/<key>": value}
    assert [h["step"] for h in history] == list(range(6))
    names = {k for h in history for k in h if k != "step"}
    assert "grad/h.0/ffn" in names and "grad/h.0/pre_act" in names
    assert probe_tags == {f"probe/{n}" for n in names}
    for name in names:
        expected = [(h["step"], _f32(h[name])) for h in history if name in h]
        assert _points(acc, f"probe/{name}") == expected, name


def test_a_resumed_logger_hides_the_steps_it_writes_again(tmp_path):
    """A second writer starting at step 3 in the same folder purges the first one's 3 and 4."""
    first = TensorBoardLogger(tmp_path)
    for step in range(5):
        first.on_metrics(step, {"train_loss": float(step), "tokens_per_s": 0.0})
    first.close()
    first.close()  # idempotent
    time.sleep(1.1)  # event files are ordered by their names, which hold the second
    with TensorBoardLogger(tmp_path) as second:
        for step in range(3, 6):
            second.on_metrics(step, {"train_loss": 10.0 + step})
    acc = _events(tmp_path)
    assert _points(acc, "train/loss") == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0),
                                          (5, 15.0)]
    assert "perf/tokens_per_s" not in acc.Tags()["scalars"]  # 0.0 is "not measured yet"


class _StopAt:
    def after_step(self, step, model):
        if step == 4:
            raise KeyboardInterrupt  # the run ends "interrupted", its state saved at step 3


def test_an_interrupted_and_resumed_run_shows_the_final_losses(tmp_path, data):
    cut = train(_cfg(), tmp_path, data=data, progress=False,
                callbacks=(TensorBoardLogger(tmp_path / "tb"), _StopAt()))
    assert cut.outcome == "interrupted"
    time.sleep(1.1)  # event files are ordered by their names, which hold the second
    done = train(_cfg(), tmp_path, data=data, progress=False, resume=True,
                 callbacks=(TensorBoardLogger(tmp_path / "tb"),))
    assert done.outcome == "completed"
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == list(range(6))
    acc = _events(tmp_path / "tb")
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 2
    assert _points(acc, "train/loss") == [(r["step"], _f32(r["train_loss"])) for r in rows]
    assert _points(acc, "val/loss") == [(r["step"], _f32(r["val_loss"])) for r in rows
                                        if "val_loss" in r]


def test_lone_probes_are_named_by_kind_and_duplicates_refused(tmp_path):
    probe = GradNormProbe([])
    probe.records.append({"step": 4, "h.0": {"ffn": 0.5, "pre_act": None}})
    with TensorBoardLogger(tmp_path, probes=[probe]) as logger:
        logger.after_step(4)
    assert _points(_events(tmp_path), "probe/grad/h.0/ffn") == [(4, 0.5)]
    with pytest.raises(ActlabError, match="two probes named 'grad'"):
        TensorBoardLogger(tmp_path, probes=[probe, GradNormProbe([])])


def test_missing_tensorboard_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ActlabError, match=r"pip install 'actlab\[tb\]'") as err:
        TensorBoardLogger(tmp_path)
    assert "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_log_tb_writes_event_files_beside_the_metrics(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from actlab.cli import main

    tiny = ["train", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
            "--batch-size", "4", "--eval-batches", "1", "--steps", "4", "--eval-every", "2", "--quiet"]
    assert main([*tiny, "--log", "tb"]) == 2
    assert "--log tb writes into the run folder: give --out DIR" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main([*tiny, "--log", "tb", "--out", str(run)]) == 0
    events = list((run / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e.step for e in acc.Scalars("val/loss")] == [1, 3]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([r["train_loss"] for r in rows], rel=1e-6)

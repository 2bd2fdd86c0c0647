"""What a run folder holds when things go wrong: a full disk leaves whole files or none and
one error, a diverged run is still strict JSON, a failed run is marked as such and a later
run in the same folder clears the mark."""

import errno
import json
import math
import os

import pytest

import actlab.files.atomic as atomic
import actlab.training.metrics as metrics
from actlab.analysis.figures import new_figure, save
from actlab.data import prepare
from actlab.lab.audit import run_audit
from actlab.studies.base import STUDIES, SUPPORTED, Verdict, register_study
from actlab.training.loop import train

from conftest import tiny_train

TEXT = "Shall I compare thee to a summer's day? Thou art more lovely and more temperate. " * 40


def _strict(name):
    raise ValueError(f"not strict JSON: {name}")


def strict(text: str):
    return json.loads(text, parse_constant=_strict)


def strict_lines(path):
    text = path.read_text()
    assert text == "" or text.endswith("\n")  # never half a line
    return [strict(line) for line in text.splitlines()]


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def no_space(*_args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def assert_one_enospc(err: OSError) -> None:
    assert err.errno == errno.ENOSPC
    ctx = err.__context__
    assert ctx is None or not (isinstance(ctx, OSError) and ctx.errno == errno.ENOSPC)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return prepare(str(path), "char", block_size=8)


def small(**kw):
    return tiny_train(**{"steps": 4, "eval_every": 2, "n_layer": 1, "block_size": 8, **kw})


def test_a_full_disk_at_the_save_leaves_no_half_file_and_one_error(bundle, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(small(), run, data=bundle, progress=False)  # a previous, complete run in the folder
    real_replace = os.replace

    def replace(src, dst):  # the disk fills up once training has started
        if os.path.basename(dst) in ("config.json", "env.json"):
            return real_replace(src, dst)
        no_space()

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError) as info:
        train(small(), run, data=bundle, progress=False)
    assert_one_enospc(info.value)
    assert leftovers(run) == []
    # the earlier run's weights and summary are gone with its config, not half replaced
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "env.json", "metrics.jsonl"]
    assert [r["step"] for r in strict_lines(run / "metrics.jsonl")] == [0, 1, 2, 3]


def test_a_failed_weights_write_marks_the_run_as_failed(bundle, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_replace = os.replace

    def replace(src, dst):
        if os.path.basename(dst) == "model.safetensors":
            no_space()
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError) as info:
        train(small(), run, data=bundle, progress=False)
    assert_one_enospc(info.value)
    assert leftovers(run) == [] and not (run / "model.safetensors").exists()
    summary = strict((run / "summary.json").read_text())
    assert summary == {"schema_version": 1, "outcome": "error",
                       "error": "OSError: [Errno 28] No space left on device", "steps": 4}
    assert (run / "error.txt").read_text().startswith("OSError: [Errno 28] No space left on device\n")


def test_a_full_disk_mid_line_cuts_metrics_back_to_whole_lines(bundle, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_write = os.write
    calls = []

    def write(fd, data):  # the third row gets half written, then the disk is full
        calls.append(len(data))
        if len(calls) == 3:
            return real_write(fd, bytes(data[: len(data) // 2]))
        if len(calls) > 3:
            no_space()
        return real_write(fd, data)

    monkeypatch.setattr(metrics.os, "write", write)
    with pytest.raises(OSError) as info:
        train(small(steps=10, eval_every=10), run, data=bundle, progress=False)
    assert_one_enospc(info.value)
    assert [r["step"] for r in strict_lines(run / "metrics.jsonl")] == [0, 1]
    summary = strict((run / "summary.json").read_text())
    assert summary["outcome"] == "error" and summary["error"].startswith("OSError: [Errno 28]")


def test_a_diverged_run_writes_strict_json(bundle, tmp_path):
    run = tmp_path / "run"
    cfg = small(lr=1e4, grad_clip=0.0, warmup_steps=0, steps=40, act="relu")
    result = train(cfg, run, data=bundle, progress=False)
    assert result.outcome == "diverged"
    rows = strict_lines(run / "metrics.jsonl")
    assert len(rows) == result.steps and rows[-1]["train_loss"] is None  # NaN on disk is null
    summary = strict((run / "summary.json").read_text())
    assert summary["outcome"] == "diverged" and summary["train_loss"] is None
    assert strict((run / "env.json").read_text())["device"] == "cpu"


def test_a_later_run_in_the_folder_clears_the_failure(bundle, tmp_path):
    class Boom:
        def after_step(self, step, model):
            if step == 1:
                raise RuntimeError("the callback broke\nsecond line")

    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="the callback broke"):
        train(small(), run, data=bundle, progress=False, callbacks=(Boom(),))
    summary = strict((run / "summary.json").read_text())
    # step 1 raised before its row was recorded: one step is on disk
    assert summary == {"schema_version": 1, "outcome": "error", "error": "RuntimeError: the callback broke",
                       "steps": 1}
    assert len(strict_lines(run / "metrics.jsonl")) == 1
    assert "Traceback" in (run / "error.txt").read_text()
    train(small(), run, data=bundle, progress=False)
    assert not (run / "error.txt").exists()
    assert strict((run / "summary.json").read_text())["outcome"] == "completed"


def test_a_figure_that_cannot_be_written_leaves_nothing(tmp_path, monkeypatch):
    fig, axes = new_figure()
    axes[0][0].plot([1, 2, 3])
    monkeypatch.setattr(atomic.os, "replace", no_space)
    with pytest.raises(OSError) as info:
        save(fig, tmp_path / "figures" / "a.png")
    assert info.value.errno == errno.ENOSPC
    assert list((tmp_path / "figures").iterdir()) == []
    monkeypatch.undo()
    fig, axes = new_figure()
    axes[0][0].plot([1, 2, 3])
    path = save(fig, tmp_path / "figures" / "a.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


FLAKY = {"fail": True}


def _flaky_study(preset, out_dir, progress=True):
    if FLAKY["fail"]:
        raise RuntimeError("failing on purpose this time")
    return Verdict(claim="C1", quote="q", rule="r", verdict=SUPPORTED, evidence={"x": math.nan},
                   preset=preset, study="flaky-atomic", summary="fine now")


if "flaky-atomic" not in STUDIES:
    register_study("flaky-atomic", "C1")(_flaky_study)


def test_an_audit_rerun_clears_a_studys_stale_error(tmp_path):
    FLAKY["fail"] = True
    meta = run_audit("smoke", tmp_path, studies=("flaky-atomic",), progress=False)
    assert meta["studies"]["flaky-atomic"]["error"] == "RuntimeError: failing on purpose this time"
    assert "failing on purpose" in (tmp_path / "flaky-atomic" / "error.txt").read_text()
    FLAKY["fail"] = False
    meta = run_audit("smoke", tmp_path, studies=("flaky-atomic",), progress=False)
    done = meta["studies"]["flaky-atomic"]
    assert done["error"] is None and done["verdict"] == SUPPORTED
    assert not (tmp_path / "flaky-atomic" / "error.txt").exists()
    verdict = strict((tmp_path / "flaky-atomic" / "verdict.json").read_text())
    assert verdict["evidence"] == {"x": None}  # NaN written as null
    for name in ("audit.json", "verdicts.json"):
        strict((tmp_path / name).read_text())
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "flaky-atomic") == []

"""`train(..., resume=True)`: an interrupted run continues to the same losses, bitwise."""

import json
import os
import signal

import pytest

from actlab.config import ModelConfig, TrainConfig
from actlab.errors import ActlabError
from actlab.training.loop import train
from actlab.training.state import checkpoint_path


def _cfg(**kw):
    model = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, dropout=0.1)
    base = dict(model=model, steps=10, batch_size=4, eval_every=4, eval_batches=1, warmup_steps=2,
                compile="off", threads=1)
    return TrainConfig(**{**base, **kw})


def _rows(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def _numbers(rows):
    return [(r["step"], r["train_loss"], r["grad_norm"], r["lr"], r.get("val_loss")) for r in rows]


class _StopAt:
    """Stops the run after step `at`: by SIGINT (a clean stop between steps) or by raising
    KeyboardInterrupt inside the step's callbacks (the weights may hold part of a step)."""

    def __init__(self, at, how):
        self.at, self.how = at, how

    def after_step(self, step, model):
        if step == self.at:
            if self.how == "signal":
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise KeyboardInterrupt


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    result = train(_cfg(), out, progress=False)
    assert result.outcome == "completed"
    assert not checkpoint_path(out).exists()  # a completed run leaves no state behind
    return _numbers(_rows(out)), result


@pytest.mark.parametrize("how, saved_at", [("signal", 7), ("raise", 4)])
def test_resumed_run_equals_the_run_never_stopped(tmp_path, reference, how, saved_at):
    cut = train(_cfg(), tmp_path, callbacks=(_StopAt(6, how),), progress=False)
    assert cut.outcome == "interrupted"
    assert checkpoint_path(tmp_path).exists()
    # a clean stop saves after the step it came in (7 steps); a raise keeps the last evaluation's
    import torch
    assert torch.load(checkpoint_path(tmp_path), weights_only=True)["step"] == saved_at
    resumed = train(_cfg(), tmp_path, resume=True, progress=False)
    assert resumed.outcome == "completed" and resumed.steps == 10
    assert _numbers(_rows(tmp_path)) == reference[0]  # bitwise: floats compared exactly
    assert resumed.val_loss == reference[1].val_loss
    assert resumed.best_val_loss == reference[1].best_val_loss
    for a, b in zip(resumed.model.parameters(), reference[1].model.parameters()):
        assert torch.equal(a, b)
    assert not checkpoint_path(tmp_path).exists()


def test_resume_refuses_another_config_and_a_finished_run(tmp_path):
    train(_cfg(), tmp_path, callbacks=(_StopAt(5, "signal"),), progress=False)
    with pytest.raises(ActlabError, match="another config.*lr"):
        train(_cfg(lr=1e-3), tmp_path, resume=True, progress=False)
    train(_cfg(), tmp_path, resume=True, progress=False)
    with pytest.raises(ActlabError, match="no training state"):
        train(_cfg(), tmp_path, resume=True, progress=False)
    with pytest.raises(ActlabError, match="not a run folder"):
        train(_cfg(), tmp_path / "nothing", resume=True, progress=False)


def test_result_holds_the_trained_model_and_callbacks_see_metrics(tmp_path):
    seen = []

    class Tracker:
        def on_metrics(self, step, metrics):
            seen.append((step, metrics))

        def after_train(self, model, result):
            seen.append(("end", result.outcome))

    result = train(_cfg(steps=5), tmp_path, callbacks=(Tracker(),), progress=False)
    rows = _rows(tmp_path)
    assert [s for s, _ in seen[:-1]] == [r["step"] for r in rows] == list(range(5))
    assert seen[-1] == ("end", "completed")
    assert [m["train_loss"] for _, m in seen[:-1]] == [r["train_loss"] for r in rows]
    assert seen[3][1]["val_loss"] == rows[3]["val_loss"]  # eval_every 4: the val loss lands on row 3
    assert all("tokens_per_s" in m for _, m in seen[:-1])
    import torch
    x = torch.randint(0, result.model.config.vocab_size, (1, 8))
    assert not result.model.training
    assert result.model(x)[0].shape == (1, 8, result.model.config.vocab_size)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "model" not in summary and "history" not in summary


# -- the command line --------------------------------------------------------------------------

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size",
        "4", "--eval-batches", "1", "--threads", "1", "--quiet"]


def _cli(capsys, *argv):
    from actlab.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    from actlab.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"actlab {actlab_version()}"


def actlab_version():
    import actlab

    return actlab.__version__


def test_train_names_the_steps_it_evaluated_after(capsys, tmp_path):
    code, out, _ = _cli(capsys, "train", *TINY, "--steps", "20", "--eval-every", "50")
    assert code == 0
    assert "(after step 20) ->" in out and "(after step 20);" in out  # one evaluation: the last
    code, out, _ = _cli(capsys, "train", *TINY, "--steps", "20", "--eval-every", "5")
    assert "(after step 5) ->" in out and "(after step 20);" in out


def test_out_refuses_an_existing_run_unless_told(capsys, tmp_path):
    run = tmp_path / "run"
    assert _cli(capsys, "train", *TINY, "--steps", "3", "--out", str(run))[0] == 0
    first = _rows(run)
    code, _, err = _cli(capsys, "train", *TINY, "--steps", "4", "--out", str(run))
    assert code == 2
    assert err.strip() == (f"actlab train: error: {run} holds a run already (completed after 3 "
                           f"steps): --resume {run} continues it, --overwrite replaces it, or "
                           "choose another --out")
    assert _rows(run) == first  # nothing touched
    assert _cli(capsys, "train", *TINY, "--steps", "4", "--out", str(run), "--overwrite")[0] == 0
    assert len(_rows(run)) == 4


def test_cli_resume_continues_an_interrupted_run(capsys, tmp_path, reference):
    run = tmp_path / "run"
    cfg = _cfg()
    cut = train(cfg, run, callbacks=(_StopAt(6, "signal"),), progress=False)
    assert cut.outcome == "interrupted"
    code, _, err = _cli(capsys, "train", "--resume", str(run), "--steps", "12")
    assert code == 2 and "another config (steps differ)" in err
    code, out, _ = _cli(capsys, "train", "--resume", str(run), "--quiet")
    assert code == 0, out
    assert "outcome=completed steps=10" in out
    assert _numbers(_rows(run)) == reference[0]
    code, _, err = _cli(capsys, "train", "--resume", str(run), "--quiet")
    assert code == 2 and "no training state to resume from" in err


def test_loggers_leave_the_forward_free_to_compile():
    from actlab.training.runtime import compile_decision
    from actlab.training.tensorboard import TensorBoardLogger

    class Reader:
        def on_metrics(self, step, metrics):
            pass

    class Hook:
        def after_step(self, step, model):
            pass

    cfg = _cfg(compile="on")
    assert compile_decision(cfg, None, (Reader(),)) is True
    assert compile_decision(cfg, None, (TensorBoardLogger.__new__(TensorBoardLogger),)) is True
    with pytest.warns(RuntimeWarning, match="hooks need the eager model"):
        assert compile_decision(cfg, None, (Hook(),)) is False


def test_cli_resume_reads_the_run_config_as_a_file_it_does_not_trust(capsys, tmp_path):
    run = tmp_path / "run"
    train(_cfg(), run, callbacks=(_StopAt(5, "signal"),), progress=False)
    raw = json.loads((run / "config.json").read_text())
    raw["model"]["act"] = "os:getcwd"  # an import path: resolving it would run code
    (run / "config.json").write_text(json.dumps(raw))
    code, _, err = _cli(capsys, "train", "--resume", str(run), "--quiet")
    assert code == 2 and "--trust-code" in err and "os:getcwd" in err

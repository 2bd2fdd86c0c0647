"""One run of study C2 (centering): a deep MLP or a small GPT with sigmoid, sigma - 1/2 or tanh,
and the probes that measure its activations, gradient sign coherence and parameter paths.
Module level so that run_grid can hand `run_one` to worker processes.
"""

from __future__ import annotations

import contextlib

import numpy as np

from actlab.studies.common import gpt_data, job_data


class _Measure:
    """The study's probes as one trainer callback and context manager: a ProbeSet for the
    activation statistics and sign coherence, and two path-straightness probes, one over the
    consuming weights and one over all parameters (a ProbeSet holds a single path probe, over
    all parameters, at the ProbeSet's `every`). Only the paths' final values are read, so they
    record nothing along the way. All bind in `before_train`, which both training loops call
    before the first forward pass, or else at the first callback."""

    def __init__(self, every: int):
        from actlab.probes import ProbeSet

        self.probes = ProbeSet(grad=False, acts=True, sign=True, path=False, every=every)
        self.stack = contextlib.ExitStack()
        self.path = self.path_all = None

    def __enter__(self) -> _Measure:
        self.stack.enter_context(self.probes)
        return self

    def __exit__(self, *exc) -> bool:
        self.stack.close()
        return False

    def before_train(self, model) -> None:
        from actlab.probes import PathStraightness

        self.probes.before_train(model)
        if self.path is None:
            # The consuming weights are those whose rows the article says move in lockstep.
            consumers = [layer.consumer.weight for layer in self.probes.layers]
            self.path = self.stack.enter_context(PathStraightness(consumers, every=10**9))
            self.path_all = self.stack.enter_context(PathStraightness(model, every=10**9))

    def after_backward(self, step: int, model) -> None:
        self.before_train(model)
        for probe in (self.probes, self.path, self.path_all):
            probe.after_backward(step, model)

    def after_step(self, step: int, model) -> None:
        self.before_train(model)
        for probe in (self.probes, self.path, self.path_all):
            probe.after_step(step, model)

    def result(self) -> dict:
        acts, sign = self.probes.acts.summary()["layers"], self.probes.sign.summary()["layers"]
        names = list(acts)
        return {
            "layers": names,
            "act_mean": [acts[n]["mean"] for n in names],
            "act_std": [acts[n]["std"] for n in names],
            "saturated": [acts[n]["saturated"] for n in names],
            "coherence": [sign.get(n, {}).get("coherence") for n in names],
            "single_signed": [sign.get(n, {}).get("single_signed") for n in names],
            "straightness": self.path.value(),
            "straightness_all": self.path_all.value(),
        }


def _run_mlp(p: dict, measure: _Measure | None) -> dict:
    from actlab.data.chartask import char_task
    from actlab.nn.mlp import DeepMLP, default_init
    from actlab.training.mlp_loop import train_mlp

    size, task = p["size"], char_task(data=p.get("data"))
    model = DeepMLP(task.n_in, size["width"], size["depth"], task.vocab_size, p["act"],
                    init=default_init(p["act"]), seed=p["seed"])
    out = train_mlp(model, task, size["steps"], optimizer=p["optimizer"], lr=p["lr"],
                    batch_size=size["batch_size"], seed=p["seed"],
                    callbacks=(measure,) if measure else ())
    return {"outcome": out["outcome"], "val_loss": out["val_loss"], "history": out["history"]}


def _run_gpt(p: dict, measure: _Measure | None) -> dict:
    from actlab.config import ModelConfig, TrainConfig
    from actlab.training.loop import train

    size = p["size"]
    model = ModelConfig(n_layer=size["n_layer"], n_head=size["n_head"], n_embd=size["n_embd"],
                        block_size=size["block_size"], act=p["act"],
                        kernels="eager")  # the probes hook module calls (probes.layers)
    sgd = p["optimizer"] == "sgd"
    # Plain SGD: no momentum, no weight decay. Both optimizers keep actlab's warmup, cosine
    # decay and clipping at norm 1, which rescales the gradient but never turns it.
    cfg = TrainConfig(model=model, seed=p["seed"], steps=size["steps"],
                      batch_size=size["batch_size"], optimizer=p["optimizer"], lr=p["lr"],
                      weight_decay=0.0 if sgd else 0.1, warmup_steps=size["warmup_steps"],
                      eval_every=size["steps"], eval_batches=size["eval_batches"])
    run = train(cfg, data=gpt_data(size["block_size"], *job_data(p)), callbacks=(measure,) if measure else (),
                progress=False)
    history = [{k: r[k] for k in ("step", "train_loss", "val_loss") if k in r} for r in run.history]
    return {"outcome": run.outcome, "val_loss": run.val_loss, "history": history}


def run_one(params: dict) -> dict:
    """Train one (model, optimizer, activation, lr, seed); return losses and, for evaluation
    runs, the probes' per-layer numbers. JSON-able."""
    measure = _Measure(params["every"]) if params["phase"] == "eval" else None
    with measure if measure else contextlib.nullcontext():
        runner = _run_mlp if params["model"] == "mlp" else _run_gpt
        out = runner(params, measure)
        extra = measure.result() if measure else {}
    losses = [r["train_loss"] for r in out["history"]]
    final = out["val_loss"] if out["outcome"] == "completed" else None
    return {**out, **extra, "final_loss": final,
            "mean_train_loss": float(np.mean(losses)) if final is not None else None}

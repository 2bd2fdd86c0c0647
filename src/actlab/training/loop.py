"""The deterministic training loop: AdamW (or SGD), warmup + cosine, recorded clipping.

Same seed and config give bitwise-identical loss histories on CPU: the model init draws
from torch's global generator seeded once, the data order from the batcher's own
generator, so changing the activation never changes which batches a run sees.
A non-finite loss ends the run as outcome "diverged" (an outcome, not a crash); Ctrl-C or
SIGTERM ends it as "interrupted", with everything saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import torch

from actlab.config import TrainConfig
from actlab.data import Batcher, DataBundle, eval_batches, prepare
from actlab.nn.gpt import GPT
from actlab.training.checkpoint import mark_failed, write_headers, write_results
from actlab.training.compile import compile_model
from actlab.training.env import resolve_device
from actlab.training.metrics import (
    MetricsLog,
    PendingLosses,
    RunClock,
    RunResult,
    Validation,
    flush_interval,
    step_seconds,
)
from actlab.training.progress import StepProgress
from actlab.training.runtime import autocast, compile_decision, torch_threads
from actlab.training.schedule import lr_at, make_optimizer
from actlab.training.signals import StopSignals
from actlab.training.state import ResumePoint, clear_state, restore, resume_point, save_state

__all__ = ["MetricsLog", "RunResult", "autocast", "evaluate", "lr_at", "make_optimizer",
           "step_seconds", "train"]


def train(
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    data: DataBundle | None = None,
    callbacks: tuple = (),
    progress: bool = True,
    compile: bool | None = None,
    resume: bool = False,
) -> RunResult:
    """Train one model as `cfg` says; write config, env, metrics and weights to out_dir.
    The result holds the trained model (`result.model`, in eval mode).

    compile=True runs the training forward through torch.compile (actlab.training.compile): ~10% faster
    steps on CPU for 5-25 s of compilation in the first step; None follows cfg.compile, whose
    default "auto" compiles runs of 2,000 steps or more (TrainConfig.compile_wanted). With
    callbacks the forward stays eager (with a warning if compilation was asked for by name):
    they hook the model from outside, and compiled graphs do not run module hooks faithfully.

    A callback may define any of `before_train(model)` (before the first forward pass),
    `after_backward(step, model)` (gradients present, unclipped), `after_step(step, model)`,
    `on_metrics(step, metrics)` (each metrics.jsonl row once it is final, a validation loss
    included, with the run's `tokens_per_s` added: forward them to any tracker) and
    `after_train(model, result)` (the run ended; its files are written).

    With out_dir, the whole training state is saved after every evaluation and when a stop
    signal ends the run (training.state); `resume=True` continues the run in out_dir from
    there, with the same losses, bitwise, as a run never stopped. `cfg` must then be the
    run's own config (config.json).
    `cfg` is left as it was: the run uses a copy whose vocabulary is the data's. cfg.threads,
    when set, holds for the run only; the caller's thread count is back when train() returns.

    Ctrl-C or SIGTERM during the steps ends the run as outcome "interrupted", its metrics,
    weights and summary saved; no signal cuts the saving short (actlab.training.signals). One
    that arrives too late to end the run early, or before the steps start, raises
    KeyboardInterrupt (after the files are written). A run that raises leaves summary.json
    with outcome "error" and error.txt in out_dir, and the error goes on up unchanged.
    """
    device = resolve_device(cfg.device)
    compile = compile_decision(cfg, compile, callbacks)
    with torch_threads(cfg.threads), StopSignals() as signals:
        if data is None:
            data = prepare(cfg.data, cfg.tokenizer, cfg.model.block_size, vocab_size=cfg.bpe_vocab,
                           val_fraction=cfg.val_fraction)
        cfg = _with_vocab(cfg, data.vocab_size)
        out = Path(out_dir) if out_dir else None
        start = resume_point(out, cfg) if resume else None
        if out:
            write_headers(out, cfg, data, compile, device)
            if start is None:
                clear_state(out)
        log = MetricsLog(out, keep=start.rows if start else None)
        try:
            result = _train(cfg, out, data, device, compile, callbacks, progress, log, signals,
                            start)
        except BaseException as err:
            with contextlib.suppress(OSError):  # the first error is the one to report
                log.close()
            if out and not isinstance(err, KeyboardInterrupt):
                mark_failed(out, err, len(log.rows))
            raise
    if signals.requested is not None and result.outcome != "interrupted":
        raise KeyboardInterrupt  # a signal during the saving: honoured now the files are whole
    return result


def _train(cfg: TrainConfig, out: Path | None, data: DataBundle, device: torch.device,
           compile: bool, callbacks: tuple, progress: bool, log: MetricsLog,
           signals: StopSignals, start: ResumePoint | None) -> RunResult:
    """Build the model, run the steps, then save; the saving is out of signals' reach."""
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model).to(device)
    stepper = _Stepper(cfg, device, model, model, make_optimizer(model, cfg),
                       Batcher(data.train_ids, cfg.model.block_size, cfg.batch_size, seed=cfg.seed),
                       callbacks)
    first = 0
    if start is not None:
        first = restore(start.state, model=model, optimizer=stepper.optimizer,
                        batcher=stepper.batcher)
    # Training steps may go through the compiled forward; evaluation calls the eager module
    # (same parameters), which spares a second compilation for the no-grad graph.
    stepper.forward = compile_model(model) if compile else model
    val_batches = eval_batches(data.val_ids, cfg.model.block_size, cfg.batch_size,
                               cfg.eval_batches)
    clock = RunClock(tokens_per_step=cfg.batch_size * cfg.model.block_size,
                     offset=start.seconds if start else 0.0)
    pending = PendingLosses(log, clock, every=flush_interval(device))
    val = Validation(log)
    if start is not None:
        pending.train_loss = start.rows[-1]["train_loss"] if start.rows else None
        for row in start.rows:
            if row.get("val_loss") is not None:
                val.note(row["val_loss"])
    log.listeners = tuple(_metrics_listener(cb, clock) for cb in callbacks if hasattr(cb, "on_metrics"))
    config_hash = cfg.hash()
    save = (lambda steps: save_state(out, step=steps, config_hash=config_hash, model=model,
                                     optimizer=stepper.optimizer, batcher=stepper.batcher)) if out else None

    bar = StepProgress(cfg.steps, enabled=progress, start=first)
    for cb in callbacks:
        getattr(cb, "before_train", _noop)(model)
    clean = True  # whether the weights hold whole steps only
    try:
        signals.start_steps()
        with bar:
            outcome = _run_steps(stepper, first, val_batches, pending, clock, val, bar, signals, save)
        signals.start_saving()  # inside the try: a signal until here still ends as "interrupted"
    except KeyboardInterrupt:
        outcome, clean = "interrupted", False  # keep what was computed: the rows held, the weights
    signals.start_saving()
    if outcome == "interrupted":
        pending.flush()
    log.close()
    if out is not None:
        if outcome == "interrupted" and clean:
            save(len(log.rows))
        elif outcome != "interrupted":  # completed or diverged: nothing left to continue
            clear_state(out)

    result = RunResult(
        outcome=outcome, steps=len(log.rows), train_loss=pending.train_loss,
        val_loss=val.last, best_val_loss=val.best, tokens_per_s=clock.tokens_per_s(),
        seconds=clock.seconds(), n_params=model.num_params(), out_dir=str(out) if out else None,
        history=log.rows, baselines=data.baselines(), model=model.eval(),
    )
    if out:
        write_results(out, model, cfg, result)
    for cb in callbacks:
        getattr(cb, "after_train", _noop)(model, result)
    return result


@torch.no_grad()
def evaluate(model: GPT, batches, device: torch.device, dtype: str) -> float:
    model.eval()
    total = torch.zeros((), device=device)
    for x, y in batches:
        with autocast(device, dtype):
            _, loss = model(x.to(device), y.to(device))
        total += loss.float()
    model.train()
    return (total / len(batches)).item()


def _run_steps(stepper: _Stepper, first: int, val_batches: list, pending: PendingLosses,
               clock: RunClock, val: Validation, bar: StepProgress, signals: StopSignals,
               save) -> str:
    """Optimizer steps `first` .. cfg.steps - 1 with their flushes and evaluations, the state
    saved after each evaluation when `save` is given: "completed", "diverged" as soon as a
    flush finds a non-finite loss, or "interrupted" after the step during which a stop signal
    came."""
    cfg = stepper.cfg
    for step in range(first, cfg.steps):
        lr, loss, grad_norm = stepper.step(step)
        pending.add(step, lr, loss, grad_norm)
        evaluating = (step + 1) % cfg.eval_every == 0 or step == cfg.steps - 1
        if pending.due() or evaluating:
            with signals.held():
                finite = pending.flush()
            if not finite:
                return "diverged"
            clock.flushed(step)
        if evaluating:
            loss_val = evaluate(stepper.model, val_batches, stepper.device, cfg.dtype)
            with signals.held():
                val.record(loss_val)
                if save is not None and step < cfg.steps - 1:
                    save(step + 1)
        if not pending:
            bar.update(step + 1, pending.train_loss, clock.tokens_per_s())
        if signals.requested is not None:
            return "interrupted"
    return "completed"


@dataclasses.dataclass
class _Stepper:
    """One optimizer step at a time: schedule, batch, forward and backward, clipping, update,
    with the callbacks at their two points inside it."""

    cfg: TrainConfig
    device: torch.device
    model: GPT
    forward: object  # the model, or its compiled forward
    optimizer: torch.optim.Optimizer
    batcher: Batcher
    callbacks: tuple

    def step(self, step: int) -> tuple[float, torch.Tensor, torch.Tensor]:
        """(learning rate, loss, gradient norm before clipping), both tensors still on the device."""
        cfg, model = self.cfg, self.model
        lr = lr_at(step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = self.batcher.next()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with autocast(self.device, cfg.dtype):
            _, loss = self.forward(x, y)
        loss.backward()
        for cb in self.callbacks:
            getattr(cb, "after_backward", _noop)(step, model)
        # clip_grad_norm_ returns the total norm *before* clipping: that is what we log
        clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for cb in self.callbacks:
            getattr(cb, "after_step", _noop)(step, model)
        return lr, loss, grad_norm


def _metrics_listener(cb, clock: RunClock):
    def listener(row: dict) -> None:
        cb.on_metrics(row["step"], {**row, "tokens_per_s": clock.tokens_per_s()})
    return listener


def _with_vocab(cfg: TrainConfig, vocab_size: int) -> TrainConfig:
    """A copy of cfg whose model has the data's vocabulary size; cfg itself is not touched."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=vocab_size))


def _noop(*_args) -> None:
    return None

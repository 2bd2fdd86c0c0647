"""The deep MLP's training loop: constant learning rate, no clipping, the trainer's callbacks.

    from actlab.training.mlp_loop import train_mlp
    out = train_mlp(model, task, steps=200, optimizer="sgd", lr=0.1, callbacks=(probes,))

Returns {"outcome", "steps", "train_loss", "val_loss", "history"}, JSON-able, bitwise
deterministic on CPU for a given seed and thread count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from actlab.data.chartask import CharTask
from actlab.errors import ActlabError

OPTIMIZERS = ("sgd", "adamw")


def _noop(*_args) -> None:
    return None


def train_mlp(model: nn.Module, task: CharTask, steps: int, optimizer: str = "sgd", lr: float = 0.1,
              batch_size: int = 64, seed: int = 0, callbacks: tuple = (), momentum: float = 0.0,
              weight_decay: float = 0.0, eval_every: int | None = None, eval_size: int = 2048) -> dict:
    """Train with a constant learning rate and no clipping (the textbook setting: nothing
    rescues a vanishing or exploding gradient). Callbacks follow actlab.training.loop's protocol:
    `after_backward(step, model)` with gradients present, then `after_step(step, model)`.

    History rows: {"step", "train_loss"} every step (the loss of the batch before that step's
    update), plus "val_loss" every `eval_every` steps (default steps // 4) and at the last step.
    A non-finite loss stops the run with outcome "diverged".
    """
    if optimizer not in OPTIMIZERS:
        raise ActlabError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {optimizer!r}")
    if steps < 1 or batch_size < 1 or not lr > 0:
        raise ActlabError(f"steps, batch_size and lr must be positive; got {steps}, {batch_size}, {lr}")
    params = list(model.parameters())
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(int(seed))
    val_x, val_y = task.val_set(eval_size)
    every = eval_every or max(1, steps // 4)
    history: list[dict] = []
    outcome, train_loss, val_loss = "completed", None, None
    model.train()
    for cb in callbacks:  # the same protocol as actlab.training.loop: probes bind before step 0
        getattr(cb, "before_train", _noop)(model)
    for step in range(steps):
        x, y = task.batch(gen, batch_size)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        for cb in callbacks:
            getattr(cb, "after_backward", _noop)(step, model)
        opt.step()
        opt.zero_grad(set_to_none=True)
        for cb in callbacks:
            getattr(cb, "after_step", _noop)(step, model)
        train_loss = loss.item()
        row = {"step": step, "train_loss": train_loss}
        if not math.isfinite(train_loss):
            outcome = "diverged"
            history.append(row)
            break
        if (step + 1) % every == 0 or step == steps - 1:
            model.eval()  # as in actlab.training.loop, so forward hooks can tell evaluation apart
            with torch.no_grad():
                val_loss = F.cross_entropy(model(val_x), val_y).item()
            model.train()
            row["val_loss"] = val_loss
        history.append(row)
    return {"outcome": outcome, "steps": len(history), "train_loss": train_loss,
            "val_loss": val_loss, "history": history}

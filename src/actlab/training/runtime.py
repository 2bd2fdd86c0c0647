"""How a run uses the machine: torch's thread count for the run only, bf16 autocast on CUDA,
and whether the training forward is compiled."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from actlab.config import TrainConfig


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to n inside the block (0 leaves it alone), and the
    caller's count back afterwards, whether the block returns or raises."""
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast(device: torch.device, dtype: str):
    """bf16 autocast on CUDA when asked; CPU stays float32 (no fast bf16 there)."""
    if device.type == "cuda" and dtype == "bfloat16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


MODEL_HOOKS = ("before_train", "after_backward", "after_step")


def touches_model(callback) -> bool:
    """Whether a callback reaches into the model during the steps; one that only reads the
    metrics (on_metrics, after_train: a logger) leaves the forward free to be compiled. A
    callback that defines step hooks without touching the model says so with
    `hooks_model = False`."""
    declared = getattr(callback, "hooks_model", None)
    if declared is not None:
        return bool(declared)
    return any(hasattr(callback, name) for name in MODEL_HOOKS)


def compile_decision(cfg: TrainConfig, compile: bool | None, callbacks: tuple) -> bool:
    """Whether train() compiles its forward: `compile` if given, else cfg.compile_wanted(); never
    with callbacks that hook the model from outside (compiled graphs do not run module hooks
    faithfully). Dropping a compilation asked for by name warns, pointing at train's caller."""
    asked = cfg.compile == "on" if compile is None else compile
    wanted = cfg.compile_wanted() if compile is None else compile
    if wanted and any(touches_model(cb) for cb in callbacks):
        if asked:
            warnings.warn("train(compile=True) with callbacks: hooks need the eager model, so "
                          "the forward is not compiled", RuntimeWarning, stacklevel=3)
        return False
    return wanted

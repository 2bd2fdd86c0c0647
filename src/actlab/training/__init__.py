"""Training: the GPT's loop and the deep MLP's, their schedule, metrics and checkpoints, and
the runtime around them (torch.compile, the allocator, the environment record)."""
from actlab.training.loop import RunResult, evaluate, lr_at, make_optimizer, step_seconds, train

__all__ = ["RunResult", "evaluate", "lr_at", "make_optimizer", "step_seconds", "train"]

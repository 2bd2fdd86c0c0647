"""Token streams -> training and evaluation batches, deterministically."""
from __future__ import annotations

import torch

from actlab.errors import ActlabError


def _as_ids(ids) -> torch.Tensor:
    t = torch.as_tensor(ids)
    if t.dtype != torch.long:
        t = t.long()
    if t.dim() != 1:
        t = t.reshape(-1)
    return t


def _positive(value: int, what: str) -> int:
    if int(value) != value or value < 1:
        raise ActlabError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def check_length(ids, block_size: int, what: str = "training split") -> None:
    """Raise ActlabError unless ``ids`` holds at least one context plus its target (block_size + 1 tokens)."""
    n = len(ids)
    if n < block_size + 1:
        raise ActlabError(
            f"{what}: text is shorter than one context ({n} tokens < block_size+1 = {block_size + 1}); "
            "use a longer text or a smaller block_size"
        )


def split_ids(ids: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val): the last ``val_fraction`` of the token stream is validation. No randomness."""
    if not 0.0 < val_fraction < 1.0:
        raise ActlabError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
    ids = _as_ids(ids)
    n_val = int(round(len(ids) * val_fraction))
    n_train = len(ids) - n_val
    return ids[:n_train], ids[n_train:]


class Batcher:
    """Random training windows drawn with a private ``torch.Generator`` seeded by ``seed``.

    The data order therefore does not depend on (or disturb) the global RNG used to
    initialise models: two runs with the same ids, sizes and seed see identical batches,
    whatever the model.  Offsets are drawn on the CPU, so the order is also the same when
    ``ids`` live on a GPU.
    """

    def __init__(self, ids: torch.Tensor, block_size: int, batch_size: int, seed: int):
        self.block_size = _positive(block_size, "block_size")
        self.batch_size = _positive(batch_size, "batch_size")
        self.seed = int(seed)
        self.ids = _as_ids(ids)
        check_length(self.ids, self.block_size)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)
        self._window = torch.arange(self.block_size)
        self.steps = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y), int64, shape (batch_size, block_size); y[:, t] is the token after x[:, t]."""
        high = len(self.ids) - self.block_size  # largest offset is len - block_size - 1
        offsets = torch.randint(0, high, (self.batch_size,), generator=self.generator)
        idx = offsets[:, None] + self._window
        if self.ids.device.type != "cpu":
            idx = idx.to(self.ids.device)
        self.steps += 1
        return self.ids[idx], self.ids[idx + 1]

    __next__ = next

    def __iter__(self) -> "Batcher":
        return self

    def state_dict(self) -> dict:
        return {"seed": self.seed, "steps": self.steps, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.steps = int(state["steps"])
        self.generator.set_state(state["generator"])


def eval_batches(ids: torch.Tensor, block_size: int, batch_size: int,
                 n_batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed list of ``n_batches`` (x, y) batches: ``n_batches * batch_size`` windows at evenly
    spaced offsets from the start to the end of ``ids`` (first window at 0, last ending at the
    last token).  No randomness, so every run is evaluated on the same tokens.  When the split
    holds fewer tokens than the windows need, windows overlap."""
    block_size = _positive(block_size, "block_size")
    batch_size = _positive(batch_size, "batch_size")
    n_batches = _positive(n_batches, "n_batches")
    ids = _as_ids(ids)
    check_length(ids, block_size, "validation split")
    total = batch_size * n_batches
    last = len(ids) - block_size - 1
    offsets = torch.linspace(0, last, total, dtype=torch.float64).round().long()
    idx = offsets[:, None] + torch.arange(block_size)
    if ids.device.type != "cpu":
        idx = idx.to(ids.device)
    x, y = ids[idx], ids[idx + 1]
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, total, batch_size)]

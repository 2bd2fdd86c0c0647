"""The character task the deep-MLP studies learn: the next character of the bundled corpus
from the previous `context` characters, each a fixed random N(0, 1) vector.

    from actlab.data.chartask import char_task
    task = char_task()          # cached per process
    x, y = task.batch(torch.Generator().manual_seed(0), 64)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from actlab.data.prepare import prepare

TASK_SEED = 1234  # the fixed input embedding never depends on a run's seed


@dataclass(frozen=True)
class CharTask:
    """Next character from the previous `context` characters of the bundled corpus.

    Each character is a fixed random N(0, 1) vector of `embed_dim` numbers, so inputs are zero
    mean and unit variance per component, as the init analyses of Glorot & Bengio 2010 and
    He et al. 2015 assume. The train/val split is the corpus's (first 90% / last 10%).
    """

    context: int
    embed_dim: int
    vocab_size: int
    train_ids: Tensor  # int64, 1-D
    val_ids: Tensor
    embedding: Tensor  # (vocab_size, embed_dim), fixed

    @property
    def n_in(self) -> int:
        return self.context * self.embed_dim

    def _windows(self, ids: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
        idx = offsets[:, None] + torch.arange(self.context)  # (B, context)
        x = self.embedding[ids[idx]].reshape(len(offsets), self.n_in)  # (B, context * embed_dim)
        return x, ids[offsets + self.context]

    def batch(self, generator: torch.Generator, batch_size: int) -> tuple[Tensor, Tensor]:
        """Random training windows drawn with `generator`: (x float32 (B, n_in), y int64 (B,))."""
        high = len(self.train_ids) - self.context
        offsets = torch.randint(0, high, (batch_size,), generator=generator)
        return self._windows(self.train_ids, offsets)

    def val_set(self, n: int = 2048) -> tuple[Tensor, Tensor]:
        """`n` validation windows at evenly spaced offsets: no randomness."""
        high = len(self.val_ids) - self.context - 1
        offsets = torch.linspace(0, high, n).long()
        return self._windows(self.val_ids, offsets)


@functools.lru_cache(maxsize=4)
def char_task(context: int = 8, embed_dim: int = 16, data: str | None = None) -> CharTask:
    """A corpus (None: the bundled Shakespeare) as a CharTask, built once per process and
    arguments."""
    data = prepare(data, "char", block_size=context + 1)
    gen = torch.Generator().manual_seed(TASK_SEED)
    emb = torch.randn(data.vocab_size, embed_dim, generator=gen)
    return CharTask(context, embed_dim, data.vocab_size, data.train_ids, data.val_ids, emb)

"""What every probe shares: hook bookkeeping, the `every` schedule, and the row subsample.

A probe is a context manager: hooks go on in `__enter__` and always come off in `__exit__`,
also when the body raises. It is also a trainer callback (`after_backward`, `after_step`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# Activation statistics and sign coherence are computed on at most this many rows (tokens) per
# forward: a fixed cost per step, so all probes together stay near 10% of a CPU training step at
# the quick size (2048 tokens, hidden 512; benchmarks/probe_overhead.py). 256 tokens of a
# 512-wide layer are 131k values: a fraction's sampling error per step is at most
# 1/(2 sqrt(256)) = 3.1% even if the units of a token were perfectly correlated, far less when
# they are not, and summaries pool all recorded steps. Gradient norms are never subsampled.
MAX_ROWS = 256


def stride_rows(t: Tensor, max_rows: int) -> Tensor:
    """(..., d) -> (n, d): every s-th row with s = ceil(rows / max_rows), so n <= max_rows.

    A fixed stride rather than a random draw: runs stay deterministic and the model's random
    number stream is never touched. With rows <= max_rows every row is kept.
    """
    flat = t.reshape(-1, t.shape[-1])
    step = -(-flat.shape[0] // max_rows)
    return flat[::step] if step > 1 else flat


def flatten(record: dict, prefix: str = "") -> dict:
    """{"h.0": {"ffn": 1.0}} -> {"h.0/ffn": 1.0}; lists (histograms) and None are left out,
    so the result fits a table of (step, name, value) rows."""
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


def ratio(num: float | None, den: float | None) -> float | None:
    """num / den; None when either is missing, NaN when den is 0 (0 / 0 has no value)."""
    if num is None or den is None:
        return None
    return num / den if den != 0 else math.nan


class Probe:
    """Base class: subclasses register hooks in `_attach` (through `_keep`) and reset their
    pending (not yet recorded) state in `_clear`."""

    def __init__(self, every: int = 1):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        self.every = every
        self.records: list[dict] = []
        self._handles: list = []
        self._active = False
        # The training step the next forward/backward belongs to; None until the first
        # callback, i.e. when the probe is used by hand outside a training loop.
        self._current: int | None = None

    def due(self, step: int) -> bool:
        return step % self.every == 0

    @property
    def in_loop(self) -> bool:
        """True once a trainer callback has been seen."""
        return self._current is not None

    def _armed(self) -> bool:
        """Whether hooks should compute now: attached, and the step in progress is recorded."""
        return self._active and (self._current is None or self.due(self._current))

    def _keep(self, handle) -> None:
        self._handles.append(handle)

    def _attach(self) -> None:
        pass

    def _clear(self) -> None:
        pass

    def __enter__(self):
        if self._active:
            raise RuntimeError(f"{type(self).__name__} is already attached")
        try:
            self._attach()
        except BaseException:
            self.remove()
            raise
        self._active = True
        return self

    def __exit__(self, *exc) -> bool:
        self.remove()
        return False  # never swallow the body's exception

    def remove(self) -> None:
        """Take every hook off (idempotent). Tensor hooks left on a graph that was never run
        backward check `_active` and do nothing."""
        while self._handles:
            self._handles.pop().remove()
        self._active = False
        self._clear()

    def _advance(self, step: int) -> None:
        self._clear()
        self._current = step + 1

    def after_backward(self, step: int, model=None) -> None:
        pass

    def after_step(self, step: int, model=None) -> None:
        # A loop that calls only after_step still records and advances the schedule.
        if self._current is None or self._current <= step:
            self.after_backward(step, model)

    def history(self, prefix: str = "") -> list[dict]:
        """The records as flat rows {"step", "<layer>/<key>": value}; see `flatten`."""
        return [{"step": r["step"], **flatten({k: v for k, v in r.items() if k != "step"}, prefix)}
                for r in self.records]


class LayerStatsProbe(Probe):
    """A probe whose hooks sum one statistics tensor per layer into `_pending`; a record turns
    them into numbers with one host sync, describes each row and keeps running totals."""

    def after_backward(self, step: int, model=None) -> None:
        if self.due(step) and self._pending:
            self.record(step)
        self._advance(step)

    def record(self, step: int) -> dict | None:
        """Turn the passes seen since the last record into one record (None if none)."""
        if not self._pending:
            return None
        names = [layer.name for layer in self.layers if layer.name in self._pending]
        rows = torch.stack([self._pending[n] for n in names]).tolist()  # one host sync
        record: dict = {"step": step}
        for name, row in zip(names, rows):
            row = self._row(name, row)
            record[name] = self._describe(row)
            total = self._totals.get(name)
            self._totals[name] = row if total is None else [a + b for a, b in zip(total, row)]
        self.records.append(record)
        self._clear()
        return record

    def _row(self, name: str, row: list[float]) -> list[float]:
        """The summed statistics of one layer as they are described and totalled."""
        return row

    def _describe(self, row: list[float]) -> dict:
        raise NotImplementedError

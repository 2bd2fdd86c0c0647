"""What a run measures and keeps: metrics.jsonl rows, step losses held on the device until a
flush, validation losses, the run's clock and throughput, and the RunResult they add up to."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from actlab.files.atomic import dumps, write_text


@dataclass
class RunResult:
    outcome: str  # completed | diverged | interrupted
    steps: int  # optimizer steps taken
    train_loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    tokens_per_s: float
    seconds: float
    n_params: int
    out_dir: str | None = None
    history: list[dict] = field(default_factory=list, repr=False)
    baselines: dict | None = None  # the corpus's n-gram cross-entropies (data/baselines.py)
    # The trained model (actlab.nn.gpt.GPT, in eval mode), for the caller; never serialised.
    model: object = field(default=None, repr=False, compare=False)

    def summary(self) -> dict:
        """The result as summary.json holds it: every field but the history and the model."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("history", "model")}


def step_seconds(history: list[dict]) -> float | None:
    """Median seconds per training step from metrics rows' `time_s` stamps (None if too few).

    Rows written at the same flush share a stamp, so the time is taken flush to flush and
    divided by the steps in between. The first flush (warm-up) is left out, and so is every
    interval that follows an evaluation. A median, unlike the mean that tokens_per_s gives,
    is not moved by one step the scheduler stalled.
    """
    flushes: list[tuple[int, float, bool]] = []  # (last step, stamp, evaluated after it)
    for row in history:
        if "time_s" not in row:
            return None
        if flushes and flushes[-1][1] == row["time_s"]:
            flushes[-1] = (row["step"], row["time_s"], "val_loss" in row)
        else:
            flushes.append((row["step"], row["time_s"], "val_loss" in row))
    per_step = [(t1 - t0) / (s1 - s0) for (s0, t0, ev), (s1, t1, _) in zip(flushes, flushes[1:])
                if not ev and s1 > s0]
    return statistics.median(per_step) if per_step else None


class MetricsLog:
    """metrics.jsonl, one strict-JSON object per line, appended as the run goes so that a
    killed run keeps its rows.

    The file is appended to, not rewritten atomically at each row (which would cost the whole
    file per step): every line goes out in one os.write on a descriptor opened for appending,
    and a write that fails or stops short (a full disk) is cut back to the end of the previous
    line before the error goes on up. So the file ends at a line boundary whatever stops the
    run, and every line parses on its own: non-finite numbers (a diverged loss) are written as
    null, while `rows` keeps them as floats for the caller. close() syncs the file to disk.

    The newest row is held back until the next one arrives (or close), so that a validation
    loss measured after the row was logged still lands on the same line. Each `listener` is
    called with a row once it is final, that is when it is written (with or without a file).
    """

    def __init__(self, out_dir: Path | None, listeners: tuple = (), keep: list[dict] | None = None):
        """A new log, or with `keep` (a resumed run) one that goes on from those rows: the file
        is rewritten to hold them alone, then appended to."""
        self.rows: list[dict] = list(keep or [])
        self.listeners = listeners
        self._fd = None
        self._size = 0  # bytes of whole lines in the file
        if out_dir:
            path = out_dir / "metrics.jsonl"
            if keep is not None:
                text = "".join(dumps(row, indent=None) + "\n" for row in self.rows)
                write_text(path, text)
                self._size = len(text.encode("utf-8"))
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                               | (0 if keep is not None else os.O_TRUNC), 0o644)
        self._held = False

    def write(self, row: dict) -> None:
        self._emit()
        self.rows.append(row)
        self._held = True

    def rewrite_last(self) -> None:
        """The last row changed (a validation loss was added): write it out now."""
        self._emit()

    def _emit(self) -> None:
        if not self._held:
            return
        if self._fd is not None:
            self._append((dumps(self.rows[-1], indent=None) + "\n").encode("utf-8"))
        self._held = False
        for listener in self.listeners:
            listener(self.rows[-1])

    def _append(self, line: bytes) -> None:
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)  # shrinking needs no space
            raise
        self._size += len(line)

    def close(self) -> None:
        """Write the held row, sync and close the file. The file is closed even when the
        write fails (the error goes on up); closing twice does nothing."""
        if self._fd is None:
            return
        try:
            self._emit()
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None


class RunClock:
    """Seconds since the run started, and tokens/s over the steps after the first flush (the
    warm-up: first-touch allocations, compilation) up to the latest one."""

    def __init__(self, tokens_per_step: int, offset: float = 0.0):
        """`offset`: seconds already run (a resumed run's clock goes on from its last stamp)."""
        self.tokens_per_step = tokens_per_step
        self.t_start = time.perf_counter() - offset
        self._t_timed: float | None = None
        self._step_timed = 0
        self._timed_steps = 0

    def stamp(self) -> float:
        return round(time.perf_counter() - self.t_start, 6)

    def seconds(self) -> float:
        return time.perf_counter() - self.t_start

    def flushed(self, step: int) -> None:
        """A flush ended at `step`: the first one starts the timed span, later ones extend it."""
        if self._t_timed is None:
            self._t_timed, self._step_timed = time.perf_counter(), step
        else:
            self._timed_steps = step - self._step_timed

    def tokens_per_s(self) -> float:
        if not self._timed_steps:
            return 0.0
        return self.tokens_per_step * self._timed_steps / (time.perf_counter() - self._t_timed)


def flush_interval(device: torch.device) -> int:
    """Steps between flushes: on CUDA a .item() per step stalls the GPU queue, so losses wait
    on the device for 25 steps; on CPU reading them costs nothing, so every step is written."""
    return 1 if device.type == "cpu" else 25


class PendingLosses:
    """Step losses and gradient norms kept as device tensors until a flush reads them all in one
    host sync and writes their rows to the log, stamped with the run's clock."""

    def __init__(self, log: MetricsLog, clock: RunClock, every: int):
        self.log = log
        self.clock = clock
        self.every = every
        self.train_loss: float | None = None  # the latest flushed step's loss
        self._held: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []

    def __len__(self) -> int:
        return len(self._held)

    def add(self, step: int, lr: float, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self._held.append((step, lr, loss, grad_norm))

    def due(self) -> bool:
        return len(self._held) >= self.every

    def flush(self) -> bool:
        """Write the held rows; False once a non-finite loss is found (the run diverged), which
        is the last row written."""
        if not self._held:
            return True
        values = torch.stack([torch.stack([loss.detach().float(), norm.float()])
                              for _, _, loss, norm in self._held]).tolist()
        rows = [(s, lr, v) for (s, lr, _, _), v in zip(self._held, values)]
        self._held.clear()
        now = self.clock.stamp()  # the host sync above ends the steps' work
        for step, lr, (loss, norm) in rows:
            self.train_loss = loss
            self.log.write({"step": step, "train_loss": loss, "lr": lr, "grad_norm": norm,
                            "time_s": now})
            if not math.isfinite(loss):
                return False
        return True


class Validation:
    """Validation losses: each lands on the newest metrics row; the latest and the best finite
    one are kept for the result."""

    def __init__(self, log: MetricsLog):
        self.log = log
        self.last: float | None = None
        self.best: float | None = None

    def record(self, loss: float) -> None:
        self.log.rows[-1]["val_loss"] = loss
        self.log.rewrite_last()
        self.note(loss)

    def note(self, loss: float) -> None:
        """Count a loss already on its row (a resumed run's earlier evaluations)."""
        self.last = loss
        if math.isfinite(loss):
            self.best = loss if self.best is None else min(self.best, loss)

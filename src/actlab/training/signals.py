"""Ctrl-C (SIGINT) and SIGTERM during a training run: stop at a step boundary, then save.

A scheduler sends SIGTERM before it kills a job, and a user presses Ctrl-C, often twice in
a row; either way the run should end as "interrupted" with its metrics, weights and summary
on disk. StopSignals gives train() four phases:

- before the steps (data, model): a signal raises KeyboardInterrupt at once; there is no
  run to keep yet.
- during the steps: the first signal only asks the loop to stop (`requested`), so the
  run ends after the step in progress with consistent weights; a second one raises
  KeyboardInterrupt at once, for a step that takes long (a first compiled step) or a user
  who insists (the step it cuts short is not recorded, and the saved weights may hold part
  of its update). Inside `held()` blocks (a metrics write) it waits for the block's end, so a
  row is never half recorded.
- while saving (after `start_saving()`): signals are only recorded; nothing stops the writes.
- after: the previous handlers are back. A signal that came too late to end the run early
  (`requested` set, yet the run completed or diverged) is honoured by train() raising
  KeyboardInterrupt once the files are written.

A signal is taken over only where it has its default disposition (Python's
KeyboardInterrupt for SIGINT, termination for SIGTERM) and only in the main thread, the one
Python runs handlers in. A process that ignores SIGINT keeps ignoring it: the sweep's worker
processes do, so that Ctrl-C reaches their parent alone (actlab.engine.executors). SIGTERM
sent to such a worker during a job ends the job as "interrupted", which stops the sweep
without recording it, as a Ctrl-C does (actlab.engine.sweep).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _is_default(signum: int, handler) -> bool:
    if signum == signal.SIGINT:
        return handler is signal.default_int_handler
    return handler == signal.SIG_DFL


class StopSignals:
    """SIGINT and SIGTERM as a request to stop the run, for the span of a `with` block."""

    def __init__(self):
        self.requested: int | None = None  # the first stop signal received, if any
        self._steps = False  # the steps have started: the first signal only sets `requested`
        self._held = 0  # depth of held() blocks
        self._saving = False
        self._raised = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                handler = signal.getsignal(signum)
                if _is_default(signum, handler):
                    self._previous[signum] = handler
                    signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def start_steps(self) -> None:
        """From here on, the first signal asks the loop to stop instead of raising."""
        self._steps = True

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A block no signal cuts short (a few microseconds: a metrics row, a validation
        loss); the loop sees `requested` right after it."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1

    def start_saving(self) -> None:
        """From here to the end of the `with` block, signals are recorded, never raised."""
        self._saving = True

    def _handle(self, signum: int, _frame) -> None:
        first = self.requested is None
        if first:
            self.requested = signum
        if self._saving or self._raised or self._held or (first and self._steps):
            return  # already stopping, or about to see `requested` at the step's end
        self._raised = True  # a signal during the unwinding must not raise a second time
        raise KeyboardInterrupt

"""The terminal progress bar of a training run: steps done, last loss, tokens per second."""

from __future__ import annotations


class StepProgress:
    """A rich progress bar with one task; `with` it around the steps, `update` after a flush.
    Disabled, it draws nothing and costs next to nothing."""

    def __init__(self, total: int, enabled: bool, start: int = 0):
        self.total = total
        self.start = start  # steps already taken (a resumed run)
        self.bar = _progress_bar(total, enabled)
        self._task = None

    def __enter__(self) -> StepProgress:
        self.bar.__enter__()
        self._task = self.bar.add_task("train", total=self.total, completed=self.start,
                                       loss=float("nan"), tps=0.0)
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def update(self, completed: int, loss: float | None, tps: float) -> None:
        self.bar.update(self._task, completed=completed, loss=loss, tps=tps)


def _progress_bar(total: int, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[tps]:,.0f} tok/s"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )

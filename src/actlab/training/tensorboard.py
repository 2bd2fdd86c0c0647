"""TensorBoard event files for a training run: a trainer callback around SummaryWriter.

    with TensorBoardLogger("runs/x/tb") as tb:
        train(cfg, "runs/x", callbacks=(tb,))
    # then: tensorboard --logdir runs/x/tb

Every point sits at the step number of its metrics.jsonl row (0-based: the step's index,
so step s is the loss of the (s+1)-th optimizer step), the same number the probes' records
carry, so that a point in TensorBoard and a row of metrics.jsonl or of a probe's records
are found by the same step without arithmetic.

Tags: train/loss, train/lr, train/grad_norm on every row; val/loss on the rows that hold an
evaluation; perf/tokens_per_s (the run's mean throughput so far) once it has been measured
(it is 0 before the first timed flush, and those zeros are left out). With probes, each
record's numbers go out as probe/<kind>/<layer>/<key> (e.g. probe/grad/h.0/ffn,
probe/path/straightness): the names of ProbeSet.history(), histograms left out.

The writer is opened at the first step it sees, with TensorBoard's purge at that step: a run
resumed at step T in the same folder hides what the interrupted run had written from T on,
and a fresh run into a used folder hides the old one, as metrics.jsonl is rewritten too.
tensorboard is an optional dependency (`pip install 'actlab[tb]'`), imported only here.
"""
from __future__ import annotations

from pathlib import Path

from actlab.errors import ActlabError
from actlab.probes import ActivationProbe, GradNormProbe, PathStraightness, ProbeSet, SignCoherenceProbe
from actlab.probes.base import flatten

# Lone probes are named as ProbeSet names them, so the tags are the same either way.
_KINDS = {GradNormProbe: "grad", ActivationProbe: "acts", SignCoherenceProbe: "sign",
          PathStraightness: "path"}


def summary_writer_class():
    """torch's SummaryWriter, or a one-line ActlabError when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise ActlabError("TensorBoard logging needs the tensorboard package: "
                          f"pip install 'actlab[tb]' ({reason})") from err
    return SummaryWriter


class TensorBoardLogger:
    """A trainer callback writing a run's metrics, and optionally its probes' figures, as
    TensorBoard scalars into `log_dir`.

    `probes`: a ProbeSet (as attach() returns it), one probe, a list of probes (named by kind:
    grad, acts, sign, path) or a dict {name: probe}. The logger only reads their `records`:
    the probes must be among the training callbacks too, in any order. A record is written
    at the next step end, metrics row or close after it appears.

    Closed (flushed) by `after_train`; `close()` or a with-block covers a run that raises
    before that. Events after a close open a new writer: one logger can serve several runs.
    """

    hooks_model = False  # reads metrics and probe records only: the forward may be compiled

    def __init__(self, log_dir: str | Path, probes=None):
        self._writer_class = summary_writer_class()  # fails here, before any training
        self.log_dir = Path(log_dir)
        self._probes = probes
        self._named = None if isinstance(probes, ProbeSet) else _name_probes(probes)
        self._written: dict[int, int] = {}  # id(probe) -> records already written
        self._writer = None

    # -- trainer callbacks ---------------------------------------------------------------

    def after_step(self, step: int, model=None) -> None:
        self._write_probes()

    def on_metrics(self, step: int, metrics: dict) -> None:
        writer = self._writer_at(step)
        for tag, key in (("train/loss", "train_loss"), ("train/lr", "lr"),
                         ("train/grad_norm", "grad_norm"), ("val/loss", "val_loss")):
            value = metrics.get(key)
            if value is not None:
                writer.add_scalar(tag, value, step)
        speed = metrics.get("tokens_per_s")
        if speed:  # 0.0: not measured yet
            writer.add_scalar("perf/tokens_per_s", speed, step)
        self._write_probes()

    def after_train(self, model=None, result=None) -> None:
        self.close()

    # -- the writer ----------------------------------------------------------------------

    def close(self) -> None:
        """Write the probes' last records, flush and close the event file (idempotent)."""
        self._write_probes()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()  # flushes

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def _writer_at(self, step: int):
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.log_dir), purge_step=step)
        return self._writer

    def _write_probes(self) -> None:
        """The records that appeared since the last call, each at its own step."""
        for kind, probe in self._probe_names():
            done = self._written.get(id(probe), 0)
            for record in probe.records[done:]:
                values = flatten({k: v for k, v in record.items() if k != "step"})
                writer = self._writer_at(record["step"])
                for name, value in values.items():
                    writer.add_scalar(f"probe/{kind}/{name}", value, record["step"])
            self._written[id(probe)] = len(probe.records)

    def _probe_names(self) -> list[tuple[str, object]]:
        if self._named is not None:
            return self._named
        probes = self._probes  # a ProbeSet: its probes exist once it is bound to the model
        return [(kind, getattr(probes, kind)) for kind in ProbeSet.KINDS
                if getattr(probes, kind) is not None]


def _name_probes(probes) -> list[tuple[str, object]]:
    """[(name, probe)] for None, one probe, a list of probes or a dict {name: probe}."""
    if probes is None:
        return []
    if isinstance(probes, dict):
        named = list(probes.items())
    else:
        probes = [probes] if hasattr(probes, "records") else list(probes)
        named = [(_KINDS.get(type(p), type(p).__name__.lower()), p) for p in probes]
    names = [name for name, _ in named]
    for name, probe in named:
        if not isinstance(getattr(probe, "records", None), list):
            raise ActlabError(f"probe {name!r} has no records list: pass actlab.probes objects")
        if names.count(name) > 1:
            raise ActlabError(f"two probes named {name!r}: pass a dict {{name: probe}}")
    return named


__all__ = ["TensorBoardLogger", "summary_writer_class"]

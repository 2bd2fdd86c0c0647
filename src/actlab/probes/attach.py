"""All probes at once: one context manager that is also one trainer callback.

    with attach(model) as probes:                     # hooks on from the first forward
        for step in range(steps):
            model(x, y)[1].backward()
            probes.after_backward(step, model)          # gradients present, before clipping
            opt.step(); opt.zero_grad()
            probes.after_step(step, model)
    probes.summary(), probes.history()

    with attach() as probes:                           # the model is built inside train()
        train(cfg, callbacks=(probes,))

Without a model up front, the probes attach at the first callback: `before_train(model)`, which
actlab.training.loop calls before the first forward, or else the first `after_backward`, whose step's
forward is then missed by the forward-hook probes (its gradient norms and θ_0 are still right).
"""
from __future__ import annotations

import contextlib
from typing import Iterable

from torch import nn

from actlab.probes.activation import ActivationProbe
from actlab.probes.base import MAX_ROWS, Probe
from actlab.probes.grad import GradNormProbe
from actlab.probes.layers import LayerRef, layers_of
from actlab.probes.path import PathStraightness
from actlab.probes.sign import SignCoherenceProbe


class ProbeSet:
    """Up to four probes, reachable as `.grad`, `.acts`, `.sign`, `.path` (None when off)."""

    KINDS = ("grad", "acts", "sign", "path")

    def __init__(
        self,
        target: nn.Module | Iterable[LayerRef] | None = None,
        *,
        grad: bool = True,
        acts: bool = True,
        sign: bool = True,
        path: bool = True,
        every: int = 1,
        max_rows: int = MAX_ROWS,
        bins: int = 61,
        hist_range: tuple[float, float] = (-3.0, 3.0),
        params: Iterable[nn.Parameter] | None = None,
    ):
        self.want = {"grad": grad, "acts": acts, "sign": sign, "path": path}
        self.every, self.max_rows, self.bins, self.hist_range = every, max_rows, bins, hist_range
        self.grad: GradNormProbe | None = None
        self.acts: ActivationProbe | None = None
        self.sign: SignCoherenceProbe | None = None
        self.path: PathStraightness | None = None
        self.layers: list[LayerRef] | None = None
        self.model: nn.Module | None = None  # the model bound to, when given one
        self._stack: contextlib.ExitStack | None = None
        if target is not None:
            self.bind(target, params)

    @property
    def probes(self) -> list[Probe]:
        return [p for p in (self.grad, self.acts, self.sign, self.path) if p is not None]

    def bind(self, target: nn.Module | Iterable[LayerRef], params=None) -> None:
        """Build the probes for an actlab GPT or DeepMLP (via layers_of) or a list of LayerRef. The path probe
        follows `params`, else the model's parameters; given only layers and no params, it
        waits for the model of the first callback."""
        if self.layers is not None:
            raise RuntimeError("this ProbeSet is already bound to a model")
        if isinstance(target, nn.Module):
            self.layers, self.model = layers_of(target), target
            params = target.parameters() if params is None else params
        else:
            self.layers = list(target)
        if self.want["grad"]:
            self.grad = GradNormProbe(self.layers, every=self.every)
        if self.want["acts"]:
            self.acts = ActivationProbe(self.layers, bins=self.bins, hist_range=self.hist_range,
                                        every=self.every, max_rows=self.max_rows)
        if self.want["sign"]:
            self.sign = SignCoherenceProbe(self.layers, every=self.every, max_rows=self.max_rows)
        if self.want["path"] and params is not None:
            self.path = PathStraightness(params, every=self.every)
        if self._stack is not None:  # bound after entering: attach now
            for probe in self.probes:
                self._stack.enter_context(probe)

    def __enter__(self) -> ProbeSet:
        self._stack = contextlib.ExitStack()
        try:
            for probe in self.probes:
                self._stack.enter_context(probe)
        except BaseException:
            self._stack.close()
            self._stack = None
            raise
        return self

    def __exit__(self, *exc) -> bool:
        if self._stack is not None:
            self._stack.close()  # removes every probe's hooks, even if one removal raises
            self._stack = None
        return False

    # -- trainer callbacks ---------------------------------------------------------------

    def before_train(self, model: nn.Module) -> None:
        """Attach to the model if not yet bound (a loop may call this before its first step)."""
        if self._stack is None:
            raise RuntimeError("use the probes inside `with attach(...) as probes:` so their "
                               "hooks are removed afterwards")
        if self.layers is None:
            self.bind(model)
        elif self.model is not None and model is not self.model:
            raise ValueError("these probes are attached to another model than the one training")
        elif self.want["path"] and self.path is None:
            self.path = PathStraightness(model, every=self.every)
            self._stack.enter_context(self.path)

    def after_backward(self, step: int, model: nn.Module) -> None:
        self.before_train(model)
        for probe in self.probes:
            probe.after_backward(step, model)

    def after_step(self, step: int, model: nn.Module) -> None:
        self.before_train(model)
        for probe in self.probes:
            probe.after_step(step, model)

    # -- results -------------------------------------------------------------------------

    def _named(self):
        return [(k, p) for k, p in zip(self.KINDS, (self.grad, self.acts, self.sign, self.path))
                if p is not None]

    def summary(self) -> dict:
        return {kind: probe.summary() for kind, probe in self._named()}

    def history(self) -> list[dict]:
        """Every probe's records as flat rows, one per step, names "<kind>/<layer>/<key>"
        (histograms left out): the shape run_grid stores in its metrics table."""
        rows: dict[int, dict] = {}
        for kind, probe in self._named():
            for row in probe.history(prefix=f"{kind}/"):
                rows.setdefault(row["step"], {"step": row["step"]}).update(row)
        return [rows[s] for s in sorted(rows)]


def attach(
    model_or_layers: nn.Module | Iterable[LayerRef] | None = None,
    grad: bool = True,
    acts: bool = True,
    sign: bool = True,
    path: bool = True,
    every: int = 1,
    **options,
) -> ProbeSet:
    """A ProbeSet, to use as `with attach(model) as probes:` and pass as one callback.
    `options`: max_rows, bins, hist_range, params (see ProbeSet)."""
    return ProbeSet(model_or_layers, grad=grad, acts=acts, sign=sign, path=path, every=every,
                    **options)

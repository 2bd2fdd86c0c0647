"""Path straightness of the parameter trajectory (the C2 "zig-zag descent" measurement)."""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

from actlab.probes.base import Probe


def _flat(params: list[nn.Parameter], out: Tensor | None = None) -> Tensor:
    """All parameters as one detached vector (a copy, into `out` if given), in float32 or
    wider: differences of bf16 weights would otherwise be rounded to bf16."""
    dtype = torch.float32
    for p in params:
        dtype = torch.promote_types(dtype, p.dtype)
    return torch.cat([p.detach().reshape(-1).to(dtype) for p in params], out=out)


class PathStraightness(Probe):
    """‖θ_T − θ_0‖ / Σ_t ‖θ_{t+1} − θ_t‖ over the optimizer steps, with global L2 norms over
    all parameters: 1 for a straight line, near 0 when the steps cancel (zig-zag or
    there-and-back). A zig-zag of equal steps at ±45° to the net direction gives 1/√2.

    θ_0 is taken at `__enter__`, or at the first callback if the probe was not entered (the
    first `after_backward` is still before the first optimizer step). Each `after_step` adds
    one step. No history is kept, only three flat buffers the size of the parameters: θ_0,
    the previous θ_t (the path length needs each step's start, the displacement needs θ_0) and
    a scratch buffer, so that no step allocates (fresh multi-megabyte buffers every step cost
    more in page faults than the arithmetic).

    The path is accumulated on every step; `every` only thins the records, each of which holds
    step, step_length, path_length, displacement and straightness so far. The snapshots stay
    after `__exit__`, so `value()` can be read after the with-block.
    """

    def __init__(self, params: Iterable[nn.Parameter] | nn.Module, every: int = 1):
        super().__init__(every)
        if isinstance(params, nn.Module):
            params = params.parameters()
        # Dedupe by identity: tied weights would otherwise count twice.
        seen, self.params = set(), []
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                self.params.append(p)
        if not self.params:
            raise ValueError("PathStraightness needs at least one parameter")
        self._start: Tensor | None = None
        self._prev: Tensor | None = None
        self._scratch: Tensor | None = None
        self._length: Tensor | None = None  # float64 accumulator, kept on the device (no sync)
        self.steps = 0

    def _attach(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start a new path at the current parameters."""
        self._start = _flat(self.params)
        self._prev = self._start.clone()
        self._scratch = torch.empty_like(self._start)
        self._length = torch.zeros((), dtype=torch.float64, device=self._start.device)
        self.steps = 0

    def after_backward(self, step: int, model=None) -> None:
        if self._start is None:
            self.reset()

    def after_step(self, step: int, model=None) -> None:
        if self._start is None:  # neither entered nor called back before: start here
            self.reset()
            return
        cur = _flat(self.params, out=self._scratch)  # θ_{t+1}
        # In place: prev becomes θ_t − θ_{t+1} (the exact negative of θ_{t+1} − θ_t).
        step_length = torch.linalg.vector_norm(self._prev.sub_(cur)).double()
        self._length += step_length
        self.steps += 1
        if self.due(step):
            disp = torch.linalg.vector_norm(torch.sub(cur, self._start, out=self._prev)).double()
            length, disp, sl = torch.stack([self._length, disp, step_length]).tolist()
            self.records.append({
                "step": step, "step_length": sl, "path_length": length, "displacement": disp,
                "straightness": disp / length if length > 0 else math.nan,
            })
        self._prev, self._scratch = cur, self._prev  # θ_{t+1} is the next step's start

    def path_length(self) -> float:
        return float(self._length) if self._length is not None else 0.0

    def displacement(self) -> float:
        if self._start is None:
            return math.nan
        return float(torch.linalg.vector_norm(self._prev - self._start))

    def value(self) -> float:
        """‖θ_T − θ_0‖ / Σ‖θ_{t+1} − θ_t‖; NaN before any step (and for a path of length 0)."""
        if self.steps == 0:
            return math.nan
        length = self.path_length()
        return self.displacement() / length if length > 0 else math.nan

    def summary(self) -> dict:
        return {"straightness": self.value(), "path_length": self.path_length(),
                "displacement": self.displacement(), "steps": self.steps}

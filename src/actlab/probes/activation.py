"""Activation statistics per layer: mean and spread of the outputs, saturated and dead fractions,
and a fixed-bin histogram (the C1 saturation and C2 zero-centring measurements)."""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor

from actlab import activations
from actlab.activations.properties import SATURATION_SLOPE
from actlab.probes.base import MAX_ROWS, LayerStatsProbe, stride_rows
from actlab.probes.layers import LayerRef

# Layout of a per-layer row: these counts and sums, then the histogram counts. "n" is known on
# the host (a tensor size); the rest is accumulated on the device.
_FIELDS = ("n", "sum", "sumsq", "saturated", "dead")


class ActivationProbe(LayerStatsProbe):
    """Forward hook on each layer's `act`, recording per layer name:

    mean, std   of the output y (population std)
    saturated   fraction of pre-activations x with |f'(x)| < 0.01, f' from the registry's
                `activations.derivative` (autograd on a detached copy); for gated entries x is
                the gate half and f the gate function. 0.01 is the registry's SATURATION_SLOPE.
    dead        fraction of outputs exactly 0; for gated entries of the gate function's output
                f(gate), since y = f(gate) * up is 0 wherever the gate is
    hist        counts of y in `bins` equal bins on `hist_range` (edges in `edges`). Values
                outside the range are clamped into the two end bins, so the counts always sum
                to the number of finite values, and histograms can be summed over steps and
                compared across activations; NaN is not counted.
    n           how many outputs the numbers are taken over

    Statistics use a fixed stride subsample of at most `max_rows` rows (tokens) per forward;
    see `stride_rows`. Works under torch.no_grad and inference_mode. Used by hand (no trainer
    callbacks), every forward counts and `record(step)` stores them; inside a training loop
    (after the first callback) forwards made in eval mode, the trainer's validation passes,
    are ignored.
    """

    def __init__(
        self,
        layers: list[LayerRef],
        bins: int = 61,
        hist_range: tuple[float, float] = (-3.0, 3.0),
        every: int = 1,
        max_rows: int = MAX_ROWS,
    ):
        super().__init__(every)
        lo, hi = float(hist_range[0]), float(hist_range[1])
        if bins < 1 or not lo < hi:
            raise ValueError(f"need bins >= 1 and lo < hi, got {bins} bins on ({lo}, {hi})")
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.layers = list(layers)
        self.bins, self.lo, self.hi, self.max_rows = bins, lo, hi, max_rows
        # 61 bins on [-3, 3] put 0 at the centre of the middle bin (width 6/61).
        self.edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64).tolist()
        self._gate_fns = {
            layer.name: activations.get_spec(layer.spec.gate).fn for layer in self.layers
            if layer.spec.gated
        }
        self._pending: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}
        self._totals: dict[str, list[float]] = {}

    def _attach(self) -> None:
        for layer in self.layers:
            self._keep(layer.act.register_forward_hook(partial(self._hook, layer)))

    def _clear(self) -> None:
        self._pending, self._counts = {}, {}

    def _hook(self, layer: LayerRef, module, args, output) -> None:
        if not self._armed() or (self.in_loop and not module.training):
            return
        with torch.no_grad():
            n, stats = self._stats(layer, args[0], output)
        name = layer.name
        prev = self._pending.get(name)
        # Accumulated in float64 across forwards: float32 counts stop being exact at 2^24.
        self._pending[name] = stats.double() if prev is None else prev + stats
        self._counts[name] = self._counts.get(name, 0) + n

    def _stats(self, layer: LayerRef, x: Tensor, y: Tensor) -> tuple[int, Tensor]:
        """(n, one float32 vector: _FIELDS after n, then the histogram); no host sync."""
        # Contiguous copies of the subsample: reductions over a strided view ran 5x slower.
        x = stride_rows(x.detach(), self.max_rows).float().contiguous()
        y = stride_rows(y.detach(), self.max_rows).float().contiguous()
        n = y.numel()
        if layer.spec.gated:
            x = x[:, : x.shape[1] // 2]  # the gate half
            dead = x.numel() - torch.count_nonzero(self._gate_fns[layer.name](x))
        else:
            dead = n - torch.count_nonzero(y)
        # The gate's f' for gated specs. inference_mode(False): under inference mode autograd
        # is off and derivative() would return zeros; the copy it takes is a normal tensor.
        with torch.inference_mode(False):
            slope = activations.derivative(layer.spec, x)
        saturated = (slope.abs() < SATURATION_SLOPE).sum()  # NaN counts as not saturated
        # float32 sums (pairwise, relative error ~1e-6 at these sizes; a float64 copy of y
        # doubled the hook's cost); the counts are exact in float32 (at most max_rows * width).
        head = torch.stack([y.sum(), torch.linalg.vector_norm(y).square(), saturated, dead])
        return n, torch.cat([head, self._histogram(y)])  # stack and cat promote to float32

    def _histogram(self, y: Tensor) -> Tensor:
        """Counts in `bins` equal bins on [lo, hi]; outside values go to the end bins, NaN nowhere.

        Bin index floor((y - lo) * bins / (hi - lo)) clamped to [0, bins - 1] (y = hi lands in the
        last bin, as in torch.histc), NaN sent to an extra bin that is dropped. This ran 3x
        faster than torch.histc on CPU.
        """
        scale = self.bins / (self.hi - self.lo)
        z = y.mul(scale).sub_(self.lo * scale).clamp_(0, self.bins - 1).nan_to_num_(nan=self.bins)
        return torch.bincount(z.int().view(-1), minlength=self.bins + 1)[: self.bins]

    # -- records -------------------------------------------------------------------------

    def _row(self, name: str, row: list[float]) -> list[float]:
        return [float(self._counts[name]), *row]  # the element count leads every row

    def _describe(self, row: list[float]) -> dict:
        n, s, sq, sat, dead = row[: len(_FIELDS)]
        mean = s / n if n else math.nan
        var = sq / n - mean * mean if n else math.nan
        return {
            "mean": mean,
            "std": math.sqrt(max(var, 0.0)) if math.isfinite(var) else math.nan,
            "saturated": sat / n if n else math.nan,
            "dead": dead / n if n else math.nan,
            "hist": [int(c) for c in row[len(_FIELDS):]],
            "n": int(n),
        }

    def summary(self) -> dict:
        """Per layer, the statistics pooled over all recorded steps (histograms summed)."""
        return {
            "edges": self.edges,
            "steps": len(self.records),
            "layers": {name: self._describe(total) for name, total in self._totals.items()},
        }

"""Sign coherence of per-example weight gradients (the C2 "zig-zag" measurement).

The article's argument (after LeCun et al. 1998, Efficient BackProp, section 4.3): if every input
a_j of a layer is positive, as after a sigmoid, then for one example the gradient of row i of the
weight matrix, delta_i * a, has the sign of delta_i in every entry, so all weights of a row can
only move together up or together down and descent zig-zags. This probe measures how often that
happens in the Linear that consumes each activation.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from actlab.probes.base import MAX_ROWS, LayerStatsProbe, ratio, stride_rows
from actlab.probes.layers import LayerRef


class SignCoherenceProbe(LayerStatsProbe):
    """Per layer, for the `consumer` Linear, over the tokens n of a step (each token is one
    example: the weight gradient is the sum over tokens of delta_n a_n^T):

    coherence      mean over (token, row) pairs of |sum_j sign(delta_n,i a_n,j)| / #{j : a_n,j != 0}:
                   1 when every such row is single-signed, about 0 for random signs
    single_signed  fraction of (token, row) pairs whose row has all nonzero entries of one sign
    pairs          how many (token, row) pairs the two numbers are averaged over

    Pairs count when delta_n,i != 0 and a_n has a nonzero entry; a row of zeros has no sign.

    Why it needs only per-token counts: sign(delta_i a_j) = sign(delta_i) sign(a_j), so for a row
    with delta_i != 0, |sum_j sign(delta_i a_j)| = |P_n - M_n| with P_n, M_n the numbers of
    positive and negative entries of a_n, and the nonzero entries number P_n + M_n. Both numbers
    are the same for every row of a token; the row is single-signed iff min(P_n, M_n) = 0. With
    k_n = #{i : delta_n,i != 0}, each token contributes k_n pairs, all with the same value. So
    the forward hook keeps P_n and M_n, a tensor hook on the output gradient counts k_n, and no
    per-example gradient (a d_out x d_in matrix per token) is ever formed.

    Tokens are a fixed stride subsample of at most `max_rows` per forward (see `stride_rows`).
    """

    def __init__(self, layers: list[LayerRef], every: int = 1, max_rows: int = MAX_ROWS):
        super().__init__(every)
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.layers = list(layers)
        self.max_rows = max_rows
        self._pending: dict[str, Tensor] = {}
        self._totals: dict[str, list[float]] = {}

    def _attach(self) -> None:
        for layer in self.layers:
            self._keep(layer.consumer.register_forward_hook(partial(self._forward_hook, layer.name)))

    def _clear(self) -> None:
        self._pending = {}

    def _forward_hook(self, name: str, module, args, output) -> None:
        if not (isinstance(output, Tensor) and output.requires_grad and self._armed()):
            return
        with torch.no_grad():
            # sign() of the strided subsample is one pass into a contiguous tensor, so the
            # reductions below run fast; sums of +-1 and 0 are exact in float32 to 2^24 terms
            # (bf16 under autocast is not, hence the dtype).
            signs = stride_rows(args[0].detach(), self.max_rows).sign()
            net = signs.sum(-1, dtype=torch.float32).double()  # P - M
            nonzero = signs.abs_().sum(-1, dtype=torch.float32).double()  # P + M
            valid = nonzero > 0
            coherence = net.abs() / nonzero.clamp(min=1)
            single = (valid & (net.abs() == nonzero)).double()  # min(P, M) = 0
        # The closure holds three vectors of at most max_rows numbers until the backward pass.
        output.register_hook(partial(self._grad_hook, name, coherence, single, valid))

    def _grad_hook(self, name, coherence, single, valid, grad) -> None:
        if not self._active:
            return
        with torch.no_grad():
            d = stride_rows(grad.detach(), self.max_rows)
            k = d.sign().abs_().sum(-1, dtype=torch.float32).double() * valid  # delta_i != 0
            stats = torch.stack([(k * coherence).sum(), (k * single).sum(), k.sum()])
        prev = self._pending.get(name)
        self._pending[name] = stats if prev is None else prev + stats

    # -- records -------------------------------------------------------------------------


    @staticmethod
    def _describe(row: list[float]) -> dict:
        coherence, single, pairs = row
        return {"coherence": ratio(coherence, pairs), "single_signed": ratio(single, pairs),
                "pairs": int(pairs)}

    def summary(self) -> dict:
        """Per layer, pooled over all recorded steps (weighted by pairs)."""
        return {"steps": len(self.records),
                "layers": {name: self._describe(total) for name, total in self._totals.items()}}

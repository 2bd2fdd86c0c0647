"""Per-layer gradient norms before clipping, and how the gradient splits between the FFN branch
and the residual identity path (the C1 "vanishing gradients" measurements).

In a pre-LN block the stream after the attention sub-layer, x, feeds two paths:
out = x + FFN(ln_2(x)). Its gradient is the sum of what arrives through the identity (the
block's grad_output) and what comes back through the branch (ln_2's grad_input). He et al.
2016 (arXiv:1603.05027) argue that the identity path carries the gradient undiminished, so a
saturating activation inside the branch cannot make it vanish; `branch_ratio` measures how
much the branch adds relative to the identity.
"""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor

from actlab.probes.base import Probe, ratio
from actlab.probes.layers import LayerRef


def _sq_norm(t: Tensor) -> Tensor:
    """‖t‖², computed in float32 at least (bf16 gradients would overflow or round coarsely)."""
    dtype = torch.promote_types(t.dtype, torch.float32)
    return torch.linalg.vector_norm(t.detach(), dtype=dtype).square()


class GradNormProbe(Probe):
    """Records, at `after_backward` (gradients present, before clipping), per layer name:

    <weight name>  L2 norm of each of the layer's `weights`' .grad (None if it has none)
    ffn            L2 norm of all of them together
    pre_act        norm of the gradient w.r.t. the activation's input (the pre-activation)
    and for layers with a `block` (residual networks):
    stream         norm of the gradient of the residual stream entering the block
    branch         norm of the gradient flowing back through the FFN branch into the stream
                   (`branch_in`'s grad_input)
    residual       norm of the gradient arriving through the identity (the block's grad_output);
                   None for a block built without residual connections (`block.residual` False)
    branch_ratio   branch / residual

    If a module runs several times in one step (gradient accumulation) the squared norms add:
    the norm is taken over the concatenation of the micro-batches' gradients. Hook work is
    done only on recorded steps and without host syncs; values become floats at record time.
    """

    def __init__(self, layers: list[LayerRef], every: int = 1):
        super().__init__(every)
        self.layers = list(layers)
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique, got {names}")
        self._pending: dict[tuple[str, str], Tensor] = {}

    # -- hooks -------------------------------------------------------------------------

    def _attach(self) -> None:
        for layer in self.layers:
            name, block = layer.name, layer.block
            self._keep(layer.act.register_forward_pre_hook(partial(self._input_hook, name, "pre_act")))
            if block is None:
                continue
            self._keep(block.register_forward_pre_hook(partial(self._input_hook, name, "stream")))
            if getattr(block, "residual", True):
                self._keep(block.register_forward_hook(partial(self._output_hook, name)))
            if layer.branch_in is not None:
                hook = partial(self._branch_hook, name)
                self._keep(layer.branch_in.register_full_backward_hook(hook))

    def _add(self, name: str, key: str, grad: Tensor | None) -> None:
        if grad is None or not self._active:
            return
        sq = _sq_norm(grad)
        prev = self._pending.get((name, key))
        self._pending[(name, key)] = sq if prev is None else prev + sq

    def _input_hook(self, name: str, key: str, module, args) -> None:
        x = args[0] if args else None
        if isinstance(x, Tensor) and x.requires_grad and self._armed():
            x.register_hook(partial(self._add, name, key))  # returns None: grad unchanged

    def _output_hook(self, name: str, module, args, output) -> None:
        if isinstance(output, Tensor) and output.requires_grad and self._armed():
            output.register_hook(partial(self._add, name, "residual"))

    def _branch_hook(self, name: str, module, grad_input, grad_output) -> None:
        if self._armed():
            self._add(name, "branch", grad_input[0])

    def _clear(self) -> None:
        self._pending = {}

    # -- records -------------------------------------------------------------------------

    def after_backward(self, step: int, model=None) -> None:
        if self.due(step):
            self.records.append(self.measure(step))
        self._advance(step)

    def after_step(self, step: int, model=None) -> None:
        pass  # weight gradients are gone after zero_grad: this probe records at after_backward

    def measure(self, step: int) -> dict:
        """The record for the gradients present now (usable by hand, outside a trainer)."""
        keys, values = [], []
        for layer in self.layers:
            for wname, p in layer.weights.items():
                if p.grad is not None:
                    keys.append((layer.name, wname))
                    values.append(_sq_norm(p.grad))
        for key, value in self._pending.items():
            keys.append(key)
            values.append(value)
        # One host sync for the whole record.
        floats = torch.stack(values).sqrt().tolist() if values else []
        got = dict(zip(keys, floats))

        record: dict = {"step": step}
        for layer in self.layers:
            n = layer.name
            row: dict = {w: got.get((n, w)) for w in layer.weights}
            present = [v for v in row.values() if v is not None]
            row["ffn"] = math.sqrt(sum(v * v for v in present)) if present else None
            row["pre_act"] = got.get((n, "pre_act"))
            if layer.block is not None:
                row["stream"] = got.get((n, "stream"))
                row["branch"] = got.get((n, "branch"))
                row["residual"] = got.get((n, "residual"))
                row["branch_ratio"] = ratio(row["branch"], row["residual"])
            record[n] = row
        return record

    def summary(self) -> dict:
        """Per layer and key, the mean over recorded steps (missing values skipped)."""
        means: dict = {}
        for layer in self.layers:
            keys = [k for k in (self.records[0][layer.name] if self.records else {})]
            means[layer.name] = {}
            for key in keys:
                vals = [r[layer.name][key] for r in self.records if r[layer.name][key] is not None]
                means[layer.name][key] = sum(vals) / len(vals) if vals else None
        return {"layers": [layer.name for layer in self.layers],
                "steps": len(self.records), "mean": means}

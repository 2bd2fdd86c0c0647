"""Gated activations (GLU family): the input's last dimension 2h is split into gate and value halves.

Shazeer 2020, "GLU Variants Improve Transformer" (arXiv:2002.05202), writes the FFN as
f(xW) * xV; here the two projections are one linear layer of width 2h, so the module sees
[xW, xV] concatenated and returns f(xW) * xV with last dimension h.
"""
from __future__ import annotations

from torch import Tensor, nn

from actlab.activations import kernels
from actlab.activations.functions import GELU, Identity, ReLU, Sigmoid, Swish
from actlab.activations.registry import register

_SHAZEER = "Shazeer 2020, GLU Variants Improve Transformer, arXiv:2002.05202"


class GatedActivation(nn.Module):
    """f(gate) * up, where gate, up = x.chunk(2, dim=-1).

    `gate_fn` is the plain activation module applied to the gate half and `gate` its registry
    name. It is a submodule, so a probe can call it to recompute f(gate) from a hooked input.

    `mode` (kernels.MODES) picks how the product is computed: "eager" calls `gate_fn` and
    multiplies; the others run kernels.py's autograd Function, which keeps only x for backward;
    both give eager's numbers. A GPT sets it from ModelConfig.kernels when it is built.
    """

    gate: str = ""
    mode: str = "auto"

    def __init__(self, gate_fn: nn.Module):
        super().__init__()
        self.gate_fn = gate_fn

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 2:
            raise ValueError(
                f"{type(self).__name__} needs an even last dimension (gate and value halves), "
                f"got {x.shape[-1]}"
            )
        if self.mode != "eager" and kernels.fusable(self.gate, x):
            return kernels.GatedAct.apply(x, self.gate, self.mode)
        gate, up = x.chunk(2, dim=-1)  # (..., 2h) -> two (..., h)
        return self.gate_fn(gate) * up


@register(
    "glu",
    gated=True,
    gate="sigmoid",
    formula="sigmoid(xW) * xV",
    paper="Dauphin, Fan, Auli & Grangier 2017, arXiv:1612.08083; " + _SHAZEER,
)
class GLU(GatedActivation):
    """Gated linear unit with a sigmoid gate (Dauphin et al. 2017): sigmoid kept as a gate."""

    gate = "sigmoid"

    def __init__(self):
        super().__init__(Sigmoid())


@register("bilinear", gated=True, gate="identity", formula="xW * xV", paper=_SHAZEER)
class Bilinear(GatedActivation):
    """GLU with no nonlinearity on the gate, xW * xV (Shazeer 2020; Dauphin et al. 2017)."""

    gate = "identity"

    def __init__(self):
        super().__init__(Identity())


@register("reglu", gated=True, gate="relu", formula="relu(xW) * xV", paper=_SHAZEER)
class ReGLU(GatedActivation):
    """GLU with a ReLU gate (Shazeer 2020)."""

    gate = "relu"

    def __init__(self):
        super().__init__(ReLU())


@register("geglu", gated=True, gate="gelu", formula="gelu(xW) * xV", paper=_SHAZEER)
class GEGLU(GatedActivation):
    """GLU with an (erf) GELU gate (Shazeer 2020). Gemma's GeGLU uses the tanh GELU instead."""

    gate = "gelu"

    def __init__(self):
        super().__init__(GELU())


@register("swiglu", gated=True, gate="silu", formula="silu(xW) * xV", paper=_SHAZEER)
class SwiGLU(GatedActivation):
    """GLU with a SiLU (Swish, beta = 1) gate (Shazeer 2020); the FFN of LLaMA, Mistral and Qwen."""

    gate = "silu"

    def __init__(self):
        super().__init__(Swish(1.0))

"""Hugging Face's activation names (transformers.activations.ACT2FN) in actlab's registry.

A model config from the Hub names its activation by an ACT2FN key (`hidden_act`,
`activation_function`). Every key resolves here, so such a name can be trained, measured and
swapped in as it is: as an alias where actlab already has the same function (equal to 1e-6 on
[-8, 8], tests/test_hf_names.py), otherwise as a new entry below.

The tanh-GELU family (gelu_new, gelu_pytorch_tanh, gelu_python_tanh, gelu_accurate, gelu_fast)
is one function: gelu_fast only rounds sqrt(2/pi) to 0.7978845608, which moves it by under 1e-12
in float64, so all five are aliases of `gelu_tanh`. The erf GELU (`gelu`) is a different function
(they differ by up to 5e-4), so `gelu` and `gelu_python` stay apart from them.

prelu and xielu learn parameters in Hugging Face; actlab's entries are those functions with the
parameters fixed at their initial values (PyTorch's PReLU slope 0.25; xIELU's 0.8, 0.8, 0.5).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from actlab.activations.registry import alias, register

alias("gelu", "gelu_python")
alias("gelu_tanh", "gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh", "gelu_accurate", "gelu_fast")
alias("identity", "linear")


@register(
    "gelu_10",
    formula="min(max(x * (1 + erf(x / sqrt(2))) / 2, -10), 10)",
    paper="Wu, Judd, Zhang, Isaev & Micikevicius 2020, arXiv:2004.09602 (clipped for int8)",
)
class ClippedGELU(nn.Module):
    """The erf GELU clipped to [-10, 10] (Wu et al. 2020), so that int8 quantisation keeps a
    fixed range; identical to `gelu` below x = 10."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp(F.gelu(x, approximate="none"), -10.0, 10.0)


@register(
    "hard_swish",
    aliases=("hardswish",),
    formula="x * min(max(x + 3, 0), 6) / 6",
    paper="Howard et al. 2019 (MobileNetV3), arXiv:1905.02244",
)
class HardSwish(nn.Module):
    """x * hard_sigmoid(x) (Howard et al. 2019): Swish with the sigmoid made piecewise linear."""

    def forward(self, x: Tensor) -> Tensor:
        return F.hardswish(x)


# MEGA's constants, as Hugging Face writes them: mu ~ 1/sqrt(2), sigma ~ 1/(2 sqrt(pi)).
_LAPLACE_MU, _LAPLACE_SIGMA = 0.707107, 0.282095


@register(
    "laplace",
    formula="(1 + erf((x - 0.707107) / (0.282095 * sqrt(2)))) / 2",
    paper="Ma et al. 2022 (MEGA), arXiv:2209.10655",
)
class Laplace(nn.Module):
    """The normal CDF at (x - mu) / sigma (Ma et al. 2022, MEGA): a bounded (0, 1) stand-in for
    squared ReLU with a bounded gradient. A sigmoid-shaped function, shifted to the right."""

    def forward(self, x: Tensor) -> Tensor:
        z = (x - _LAPLACE_MU) / (_LAPLACE_SIGMA * 2.0 ** 0.5)
        return 0.5 * (1.0 + torch.special.erf(z))


# Below this, softplus(x) = exp(x) to float64 precision, so sqrt(softplus(x)) = exp(x / 2).
_SOFTPLUS_TAIL = -20.0


@register(
    "sqrt_softplus",
    aliases=("sqrtsoftplus",),
    formula="sqrt(softplus(x))",
    paper="the MoE router score of DeepSeek V4; no paper of its own (named sqrtsoftplus in ACT2FN)",
)
class SqrtSoftplus(nn.Module):
    """sqrt(softplus(x)), DeepSeek V4's router score function: positive, grows like sqrt(x).

    Written as exp(x / 2) in the far negative tail: there softplus underflows to 0 in float32,
    and the square root's gradient at 0 would be infinite.
    """

    def forward(self, x: Tensor) -> Tensor:
        body = torch.sqrt(F.softplus(torch.clamp(x, min=_SOFTPLUS_TAIL)))
        tail = torch.exp(0.5 * torch.clamp(x, max=_SOFTPLUS_TAIL))  # both sides stay finite
        return torch.where(x < _SOFTPLUS_TAIL, tail, body)


@register(
    "prelu",
    formula="max(x, 0.25 * x)",
    paper="He, Zhang, Ren & Sun 2015, arXiv:1502.01852",
)
class PReLUInit(nn.Module):
    """PReLU at its initialisation: a leaky ReLU of slope 0.25 (He et al. 2015).

    PReLU learns the slope; here it stays fixed, so the registry's functions remain
    parameter-free and a model's parameter count does not depend on its activation.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, 0.25)


@register(
    "xielu",
    formula="0.8 * max(x, 0) ** 2 + 0.8 * (exp(min(x, 0)) - 1 - min(x, 0)) + 0.5 * x",
    paper="Huang & Schlag 2024, arXiv:2411.13010",
)
class XIELU(nn.Module):
    """xIELU at its initialisation (Huang & Schlag 2024; Apertus): alpha_p x^2 + beta x for
    x > 0 and alpha_n (expm1(x) - x) + beta x below, with alpha_p = alpha_n = 0.8, beta = 0.5.

    The parameters are fixed here (learned in the paper). Hugging Face's version also clips
    expm1's argument at -1e-6, which moves it by at most 8e-7 on (-1e-6, 0].
    """

    def forward(self, x: Tensor) -> Tensor:
        neg = torch.clamp(x, max=0.0)  # expm1 of a large positive x is never computed
        return torch.where(x > 0, 0.8 * x * x, 0.8 * (torch.expm1(neg) - x)) + 0.5 * x

"""The plain (elementwise) activations: x -> f(x), one small module each.

Each `formula` is written in the formula language of formula.py, so it can be checked against the module.

torch.nn.functional is used wherever it has the op: its kernels are fast and numerically stable at
extreme inputs (every entry gives finite values and gradients at +-400 in float32).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from actlab.activations.registry import register


@register(
    "sigmoid",
    formula="1 / (1 + exp(-x))",
    paper="Rumelhart, Hinton & Williams 1986, Nature 323:533",
)
class Sigmoid(nn.Module):
    """Logistic sigmoid, the classic backprop nonlinearity (Rumelhart et al. 1986).

    Range (0, 1) and slope at most 1/4: the two properties the sigmoid-vs-GPT claims are about.
    """

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)  # never computes exp of a large positive number


@register(
    "hard_sigmoid",
    formula="min(max(x / 6 + 1/2, 0), 1)",
    paper="Howard et al. 2019 (MobileNetV3), arXiv:1905.02244",
)
class HardSigmoid(nn.Module):
    """Piecewise-linear sigmoid ReLU6(x + 3) / 6 (Howard et al. 2019, MobileNetV3)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.hardsigmoid(x)


@register("tanh", formula="tanh(x)", paper="LeCun, Bottou, Orr & Muller 1998, Efficient BackProp")
class Tanh(nn.Module):
    """Hyperbolic tangent, recommended over sigmoid because it is zero-centred (LeCun et al. 1998)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x)


@register("relu", formula="max(x, 0)", paper="Nair & Hinton 2010, ICML")
class ReLU(nn.Module):
    """Rectified linear unit (Nair & Hinton 2010; Glorot, Bordes & Bengio 2011); the original Transformer's FFN."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


@register(
    "leaky_relu",
    formula="max(x, 0.01 * x)",
    paper="Maas, Hannun & Ng 2013, ICML Workshop on Deep Learning for Audio, Speech and Language",
)
class LeakyReLU(nn.Module):
    """ReLU with slope 0.01 for x < 0, so no unit is ever exactly dead (Maas et al. 2013)."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


@register(
    "relu6",
    formula="min(max(x, 0), 6)",
    paper="Krizhevsky 2010, Convolutional Deep Belief Networks on CIFAR-10",
)
class ReLU6(nn.Module):
    """ReLU capped at 6 (Krizhevsky 2010): bounded above, so it saturates on both sides."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(x)


@register("relu2", formula="max(x, 0) ** 2", paper="So et al. 2021 (Primer), arXiv:2109.08668")
class ReLU2(nn.Module):
    """Squared ReLU, found by search in Primer (So et al. 2021); used by Nemotron and modded-nanogpt."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.square(F.relu(x))


@register(
    "leaky_relu2",
    formula="max(x, 0.5 * x) ** 2",
    paper=(
        "community recipe, no paper: OpenAI parameter-golf speedrun records (2026), e.g. "
        "records/track_10min_16mb/2026-03-23_LeakyReLU_LegalTTT_ParallelMuon, from PRs #493 and #518"
    ),
)
class LeakyReLU2(nn.Module):
    """Squared LeakyReLU with slope 0.5, (leaky_relu(x, 0.5))^2: 0.25 x^2 for x < 0.

    The "LeakyReLU(0.5)^2" MLP of the 2026 small-model speedrun records (OpenAI's
    parameter-golf), a one-line change from relu2 that credits no paper: a negative input still
    gets a gradient, so no unit is dead, while the output stays non-negative. Not monotone (it
    falls for x < 0) but smooth: its slope, 2x for x > 0 and x / 2 for x < 0, is continuous at 0.
    """

    def forward(self, x: Tensor) -> Tensor:
        return torch.square(F.leaky_relu(x, 0.5))


@register(
    "elu",
    formula="max(x, 0) + min(exp(x) - 1, 0)",
    paper="Clevert, Unterthiner & Hochreiter 2015, arXiv:1511.07289",
)
class ELU(nn.Module):
    """Exponential linear unit, alpha = 1 (Clevert et al. 2015): negative outputs push the mean to 0."""

    def forward(self, x: Tensor) -> Tensor:
        # F.elu uses expm1 and only on the negative side, so +-400 stays finite.
        return F.elu(x)


@register(
    "selu",
    formula="1.0507009873554805 * (max(x, 0) + min(1.6732632423543772 * (exp(x) - 1), 0))",
    paper="Klambauer, Unterthiner, Mayr & Hochreiter 2017, arXiv:1706.02515",
)
class SELU(nn.Module):
    """Scaled ELU whose fixed point keeps activations at mean 0, variance 1 (Klambauer et al. 2017)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.selu(x)


@register(
    "gelu",
    formula="x * (1 + erf(x / sqrt(2))) / 2",
    paper="Hendrycks & Gimpel 2016, arXiv:1606.08415",
)
class GELU(nn.Module):
    """Gaussian error linear unit x * Phi(x), exact erf form (Hendrycks & Gimpel 2016); GPT-1/2/3, BERT."""

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate="none")


@register(
    "gelu_tanh",
    formula="x * (1 + tanh(sqrt(2 / 3.141592653589793) * (x + 0.044715 * x ** 3))) / 2",
    paper="Hendrycks & Gimpel 2016, arXiv:1606.08415",
)
class GELUTanh(nn.Module):
    """GELU's tanh approximation (Hendrycks & Gimpel 2016): GPT-2's `gelu_new`, Gemma's GeGLU gate.

    Kept apart from `gelu` because the two differ by up to ~5e-4, enough to break exact weight-copy tests.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate="tanh")


@register(
    "quick_gelu",
    formula="x * sigmoid(1.702 * x)",
    paper="Hendrycks & Gimpel 2016, arXiv:1606.08415",
)
class QuickGELU(nn.Module):
    """GELU's sigmoid approximation x * sigmoid(1.702 x) (Hendrycks & Gimpel 2016); used by CLIP."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


@register(
    "silu",
    aliases=("swish",),
    formula="x * sigmoid(x)",
    paper="Elfwing, Uchibe & Doya 2017, arXiv:1702.03118; Ramachandran, Zoph & Le 2017, arXiv:1710.05941",
)
class Swish(nn.Module):
    """Swish x * sigmoid(beta x) (Ramachandran et al. 2017); beta = 1 is SiLU (Elfwing et al. 2017).

    beta is a fixed number here; the registry's `silu`/`swish` entries use beta = 1.
    """

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x: Tensor) -> Tensor:
        if self.beta == 1.0:
            return F.silu(x)  # fused kernel for the common case
        return x * torch.sigmoid(self.beta * x)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


@register("mish", formula="x * tanh(softplus(x))", paper="Misra 2019, arXiv:1908.08681")
class Mish(nn.Module):
    """Mish x * tanh(softplus(x)) (Misra 2019), a smooth, non-monotone relative of Swish."""

    def forward(self, x: Tensor) -> Tensor:
        return F.mish(x)


@register(
    "softplus",
    formula="log(1 + exp(x))",
    paper="Dugas, Bengio, Belisle, Nadeau & Garcia 2001, NeurIPS",
)
class Softplus(nn.Module):
    """Softplus log(1 + e^x) (Dugas et al. 2001), a smooth ReLU whose slope is the sigmoid."""

    def forward(self, x: Tensor) -> Tensor:
        # F.softplus switches to x above 20, so exp never overflows.
        return F.softplus(x)


@register("identity", formula="x", paper="no nonlinearity: the linear baseline")
class Identity(nn.Module):
    """f(x) = x. The baseline: a stack of linear layers is one linear map."""

    def forward(self, x: Tensor) -> Tensor:
        return x


@register(
    "sigmoid_centered",
    formula="sigmoid(x) - 1/2",
    paper="ablation of sigmoid; centering argument from LeCun, Bottou, Orr & Muller 1998",
)
class SigmoidCentered(nn.Module):
    """sigmoid(x) - 1/2: the sigmoid's shape and slope, shifted to be zero-centred.

    The clean test of the centering claim: only the output mean differs from `sigmoid`
    (it equals tanh(x / 2) / 2, so it is a rescaled tanh with the sigmoid's 1/4 slope).
    """

    def forward(self, x: Tensor) -> Tensor:
        # Same function as sigmoid(x) - 0.5, but that form cancels catastrophically in
        # float32: it returns exactly 0 for |x| < ~1e-8, which silences deep narrow stacks.
        return 0.5 * torch.tanh(0.5 * x)

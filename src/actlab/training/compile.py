"""torch.compile for a training forward: inductor fuses the elementwise work between the GEMMs.

What it buys, measured with benchmarks/throughput.py --compile (2-core CPU, float32, forward,
backward and AdamW per step, interleaved with the eager model): LayerNorm, bias, GELU, residual
adds and the loss become a few generated C++ loops instead of one aten kernel and one memory pass
apiece, and the graph calls its kernels from C++ (inductor's cpp_wrapper) instead of Python: a
step 8-10% faster at size S (4 layers x 128) and ~3% at size M (6 x 384, where the GEMMs take
~80% of the step). What it costs: the first step compiles, 20-25 s with a cold cache and 5-8 s
in a fresh process once the inductor cache (/tmp/torchinductor_$USER) holds the graphs. That is
paid back after roughly 1,000-2,500 steps at S, so TrainConfig.compile's default "auto" compiles
only runs of 2,000 steps or more (TrainConfig.compile_wanted): the CLI's 200-step default and the
studies' sweeps of short runs stay eager. Each new model shape recompiles; past dynamo's limit
(8 per process) further shapes run eagerly.

One rewrite on CPU: tanh-GELU is evaluated as x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3),
which equals x * (1 + tanh(u)) / 2 exactly in real arithmetic and differs in float32 by at most
a few ulp (measured 5e-7 on N(0, 1) inputs). The reason is speed: this CPU build's vectorised tanh
(Sleef's 1-ulp variant) costs 5-6x a sigmoid per element: compiled, tanh-GELU's forward and
backward took 4.3 ms for a 2048 x 512 activation on one thread against 1.9 ms in the sigmoid form,
and the whole compiled step at size S 6-7% less than with inductor's own tanh form.
CUDA compiles with inductor's own tables: its tanh is cheap, and the CUDA path stays as it was.

Probes and compile do not mix: probes hook modules from outside, and a compiled graph neither
sees hooks added after it was traced nor supports full backward hooks, so `train` keeps the
forward eager whenever callbacks are attached.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from actlab.training.torch_private import inductor_compiler, inductor_decompositions, no_autograd_cache

_aten = torch.ops.aten
_KAPPA = 0.044715  # the cubic term of GELU's tanh approximation (Hendrycks & Gimpel 2016)
_TWO_BETA = 2.0 * math.sqrt(2.0 / math.pi)  # (1 + tanh(u)) / 2 = sigmoid(2u): the 2 goes in here


def gelu_tanh_sigmoid(x: Tensor) -> Tensor:
    """Tanh-GELU, x (1 + tanh(u)) / 2, written as x * sigmoid(2u)."""
    return x * torch.sigmoid(_TWO_BETA * (x + _KAPPA * x * x * x))


def gelu_tanh_sigmoid_backward(grad: Tensor, x: Tensor) -> Tensor:
    """grad * d/dx [x s], s = sigmoid(2u): s + x s (1 - s) 2u'(x), 2u' = 2 beta (1 + 3 kappa x^2)."""
    s = torch.sigmoid(_TWO_BETA * (x + _KAPPA * x * x * x))
    return grad * (s + x * s * (1 - s) * _TWO_BETA * (1 + 3 * _KAPPA * x * x))


def _cpu_backend() -> Callable:
    """Inductor with the decomposition table it uses anyway, but GELU's tanh form (forward and
    backward, float32/64) rewritten as above; every other case goes to inductor's own entry."""
    table = inductor_decompositions()
    compile_fx = inductor_compiler()
    base_fwd, base_bwd = table.get(_aten.gelu.default), table.get(_aten.gelu_backward.default)
    if base_fwd is None or base_bwd is None:  # a torch whose table lacks them: plain inductor
        return compile_fx
    exact = (torch.float32, torch.float64)

    def gelu(x: Tensor, approximate: str = "none") -> Tensor:
        if approximate == "tanh" and x.dtype in exact:
            return gelu_tanh_sigmoid(x)
        return base_fwd(x, approximate=approximate)

    def gelu_backward(grad: Tensor, x: Tensor, approximate: str = "none") -> Tensor:
        if approximate == "tanh" and x.dtype in exact:
            return gelu_tanh_sigmoid_backward(grad, x)
        return base_bwd(grad, x, approximate=approximate)

    table[_aten.gelu.default] = gelu
    table[_aten.gelu_backward.default] = gelu_backward

    def backend(graph, example_inputs):
        # AOTAutograd's cache keys ignore the decomposition table, so an entry made by a plain
        # torch.compile of the same graph could be served here (or ours there): bypass it. The
        # FX graph cache below it keys on the decomposed graph and still saves the C++ build.
        # cpp_wrapper: the generated graph calls its kernels from C++ rather than Python, which
        # took 1-1.5% off a compiled S step and 2 s off a warm-cache compile (5.3 s vs 7.4 s).
        with no_autograd_cache():
            return compile_fx(graph, example_inputs, decompositions=table,
                              config_patches={"cpp_wrapper": True})

    return backend


def compile_model(model: nn.Module) -> Callable:
    """`model`'s forward through torch.compile; the module itself stays eager and shares its
    parameters, so evaluation can call it directly without a second compilation.

    Shapes are static (a training run has one batch shape). If compilation fails on the first
    call (no C++ compiler, an unsupported platform), one warning and eager from then on, never a
    crash; an error the eager model raises too is the model's own and propagates as usual.
    """
    device = next(model.parameters()).device
    backend = _cpu_backend() if device.type == "cpu" else "inductor"
    compiled = torch.compile(model, backend=backend, dynamic=False)
    state = {"calls": 0, "eager": False}

    def forward(*args, **kwargs):
        state["calls"] += 1
        if state["eager"]:
            return model(*args, **kwargs)
        if state["calls"] > 1:
            return compiled(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001  (compiler missing or failing: run eagerly)
            out = model(*args, **kwargs)  # raises again if the fault is the model's, not the compiler's
            state["eager"] = True
            cause = err  # dynamo wraps the backend's own error: report that one
            while (inner := getattr(cause, "inner_exception", None) or cause.__cause__) is not None:
                cause = inner
            first = f"{type(cause).__name__}: {cause}".splitlines()[0][:300]
            warnings.warn(f"torch.compile failed ({first}); training continues eagerly",
                          RuntimeWarning, stacklevel=2)
            return out

    return forward

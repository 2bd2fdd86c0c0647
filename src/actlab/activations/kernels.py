"""The gated FFN's kernels: f(gate) * up, alone or fused with the output projection, as autograd
Functions that keep only their input for backward and recompute the activation there.

Memory. Eager autograd keeps, per token, for c_fc -> f(gate) * up -> c_proj: the block input (d),
c_fc's output (2h, through the gate and up views), f(gate) (h) and the product (h, c_proj's input):
d + 4h. `GatedAct` keeps only its 2h input (d + 3h, as c_proj still keeps the product);
`gated_linear` fuses the activation with c_proj and keeps 2h plus c_proj's weight, a parameter that
costs nothing extra: d + 2h, 0.54x eager at h = 8d/3 (0.70x for the bilinear gate, which has no
f(gate) to drop; 0.72x for a whole 6-layer SwiGLU GPT, attention included). Recomputing cheap
elementwise work in backward instead of storing it is the selective recomputation of Korthikanti
et al. 2022, "Reducing Activation Recomputation in Large Transformer Models" (arXiv:2205.05198);
Liger-Kernel (Hsu et al. 2024, arXiv:2410.10989) does the same for SwiGLU on GPU.

Speed. The Functions write into preallocated outputs with one aten kernel per pass, the kernels
eager autograd runs (sigmoid_backward, gelu_backward, ...) in the same order, so results equal
eager's up to float32 rounding, and eager's intermediate tensors and final cat are never made.
Measured with benchmarks/activation_kernels.py (16M values, one thread, 2-core CPU), forward +
backward over a copy's time: with glibc's default allocator, where every fresh tensor over 32 MiB
is a new mapping that page-faults in (a fresh clone costs 5-9x a copy), gated entries go from
16-25x (eager) to 10-15x (fused); with freed memory kept for reuse (actlab.training.allocator, as
actlab's processes run), eager is 4.2-8.5x, the aten kernels 3.2-8.9x (no allocation left to save, one
recomputed f(gate) to pay; row blocks for big tensors, below) and torch.compile 2.7-4.9x.
In a GPT training step the activation is a few percent of the time: fused and compile steps
were within 4% of eager's.

Choice: the default is `auto`: the aten kernels (memory for free, no compiler) for inputs below
BIG_BYTES (32 MiB), the compiled ones from there up. `compile` runs the same math through
torch.compile (inductor: one loop for forward, one for backward), which costs 3-7 s in the first
process to use it (about 20 s with a cold cache under /tmp; 0.2-0.3 s for each further gate) and
pays only where a call is long: on 16M values (64 MiB) it made every gated activation's forward +
backward 3.6-4.9x a copy against 3.2-8.9x for the aten kernels (GEGLU's exact-GELU backward is the
slow one), while at the training sizes here (4-16 MiB) a smoke run or a sweep worker would never
earn the start-up back. Modes:

    eager    the plain module composition f(gate) * up, then c_proj (the reference)
    fused    the Functions above with aten kernels
    compile  the Functions with torch.compile'd kernels; if compilation fails, a warning once and
             the fused kernels from then on, never a crash
    auto     compile on CPU for inputs of BIG_BYTES or more, fused otherwise (default)

The mode is chosen once, when the model is built, from ModelConfig.kernels (a GatedActivation
made on its own has `mode` "auto"); nothing here reads the environment or looks for hooks, so a
model computes the same with probes attached as without. The fused paths skip the activation
module's own call, which is why the probes ask for eager kernels on a gated FFN. They run on CPU
and CUDA floating tensors; double backward (create_graph=True) works: backward then runs the
differentiable math.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODES = ("eager", "fused", "compile", "auto")
DEVICES = ("cpu", "cuda")  # the device types the fused kernels and the autocast handling are for

_aten = torch.ops.aten


class Gate(NamedTuple):
    """One gate function f as torch expressions: `f(g)` and `df(grad, g, fg)` = grad * f'(g)
    (fg = f(g), for the sigmoid, whose derivative is written in its output) return new tensors
    and are what torch.compile traces; `f_into(g, out)` and `df_(grad, g, fg)` write into `out`
    and `grad` in place. f_into None means f(g) = g."""

    f: Callable[[Tensor], Tensor]
    df: Callable[[Tensor, Tensor, Tensor], Tensor]
    f_into: Callable[[Tensor, Tensor], object] | None
    df_: Callable[[Tensor, Tensor, Tensor], object]


def _silu_slope(g: Tensor) -> Tensor:
    s = torch.sigmoid(g)
    return s * (1 + g * (1 - s))


# Keyed by the registry name of the gate function (ActSpec.gate); the backward ops are the ones
# eager autograd calls for these functions, so the two paths round the same way.
GATES: dict[str, Gate] = {
    "sigmoid": Gate(
        torch.sigmoid,
        lambda grad, g, fg: _aten.sigmoid_backward(grad, fg),
        lambda g, out: torch.sigmoid(g, out=out),
        lambda grad, g, fg: _aten.sigmoid_backward.grad_input(grad, fg, grad_input=grad),
    ),
    "identity": Gate(lambda g: g, lambda grad, g, fg: grad, None, lambda grad, g, fg: None),
    "relu": Gate(
        torch.relu,
        lambda grad, g, fg: _aten.threshold_backward(grad, g, 0),
        lambda g, out: torch.clamp_min(g, 0, out=out),
        lambda grad, g, fg: _aten.threshold_backward.grad_input(grad, g, 0, grad_input=grad),
    ),
    "gelu": Gate(
        F.gelu,
        lambda grad, g, fg: _aten.gelu_backward(grad, g),
        lambda g, out: _aten.gelu.out(g, out=out),
        lambda grad, g, fg: _aten.gelu_backward.grad_input(grad, g, grad_input=grad),
    ),
    "silu": Gate(
        F.silu,
        # silu'(g) = s (1 + g (1 - s)), s = sigmoid(g), written out: aten's silu_backward has no
        # derivative of its own, and this form is what create_graph=True differentiates.
        lambda grad, g, fg: grad * _silu_slope(g),
        lambda g, out: _aten.silu.out(g, out=out),
        lambda grad, g, fg: _aten.silu_backward.grad_input(grad, g, grad_input=grad),
    ),
}


# -- the math: f(gate) * up forward, its gradient backward -------------------------------------


def _forward_math(x: Tensor, gate: str) -> Tensor:
    g, up = x.chunk(2, dim=-1)
    return GATES[gate].f(g) * up


def _backward_math(x: Tensor, grad: Tensor, gate: str) -> Tensor:
    g, up = x.chunk(2, dim=-1)
    fg = GATES[gate].f(g)
    return torch.cat([GATES[gate].df(grad * up, g, fg), grad * fg], dim=-1)


# Row blocks for tensors too big for the cache. The gate and up halves are strided views (every
# row holds [gate | up]), and aten's elementwise kernels read such views from main memory at about
# half the speed of contiguous ones (a sigmoid of the gate half of a 16M-value tensor took 6.2 ms
# against 3.5 ms on a contiguous copy, one thread); on cache-resident data the two are equal. So
# a big tensor is processed block by block: backward reads each block's halves from memory once
# and its later passes hit the cache (SwiGLU's backward on 16M values: 28 ms -> 21 ms, blocks of
# 1-4 MiB best on a 2-core EPYC). Below BIG_BYTES of input (the 32 MiB last-level cache of that
# machine), the training sizes here, blocks only added calls (3-7% slower steps at width 128, no
# gain at width 384).
BLOCK_BYTES = 2 * 2**20
BIG_BYTES = 32 * 2**20


def _row_blocks(*tensors: Tensor) -> list[tuple[Tensor, ...]]:
    """The tensors as 2-D (rows, last dim) views, cut into the same row blocks when the first is
    at least BIG_BYTES bytes."""
    flat = [t.reshape(-1, t.shape[-1]) for t in tensors]
    rows, row_bytes = flat[0].shape[0], flat[0].shape[1] * flat[0].element_size()
    step = max(1, BLOCK_BYTES // max(1, row_bytes))
    if rows * row_bytes < BIG_BYTES or rows < 2 * step:
        return [tuple(flat)]
    return [tuple(t[i:i + step] for t in flat) for i in range(0, rows, step)]


def _forward_kernels(x: Tensor, gate: str) -> Tensor:
    """f(g) * up in two passes per row block into one new tensor."""
    out = torch.empty(x.shape[:-1] + (x.shape[-1] // 2,), dtype=x.dtype, device=x.device)
    spec = GATES[gate]
    for xb, ob in _row_blocks(x, out):
        g, up = xb.chunk(2, dim=-1)
        if spec.f_into is None:
            torch.mul(g, up, out=ob)
        else:
            spec.f_into(g, ob)
            ob.mul_(up)
    return out


def _backward_kernels(x: Tensor, grad: Tensor, gate: str) -> Tensor:
    """[grad * up * f'(g), grad * f(g)] written straight into the two halves of one new tensor,
    so no cat; the gate half is (grad * up) * f'(g), eager autograd's order."""
    grad_x = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    spec = GATES[gate]
    for xb, gb, gxb in _row_blocks(x, grad, grad_x):
        g, up = xb.chunk(2, dim=-1)
        d_g, d_up = gxb.chunk(2, dim=-1)
        if spec.f_into is None:
            torch.mul(gb, up, out=d_g)
            torch.mul(gb, g, out=d_up)
            continue
        spec.f_into(g, d_up)  # f(g) first: the sigmoid's derivative reads it
        torch.mul(gb, up, out=d_g)
        spec.df_(d_g, g, d_up)
        d_up.mul_(gb)
    return grad_x


# -- torch.compile, optional ---------------------------------------------------------------------

_compile_failure: list[str] = []  # the first failure's message; then the kernels are used


@functools.cache
def _compiled() -> tuple[Callable, Callable]:
    # One compiled function each for forward and backward, the gate name an argument: dynamo
    # keeps one entry per gate (and dtype), well inside its recompile limit of 8 per function
    # (partials or closures per gate would all share one code object and blow it).
    # dynamic=True: one compilation serves every batch shape (training and evaluation batches).
    return (
        torch.compile(_forward_math, dynamic=True, fullgraph=True),
        torch.compile(_backward_math, dynamic=True, fullgraph=True),
    )


def _auto(x: Tensor) -> str:
    """'auto': compiled kernels for a CPU tensor of at least BIG_BYTES, the aten ones otherwise."""
    big = x.device.type == "cpu" and x.numel() * x.element_size() >= BIG_BYTES
    return "compile" if big else "fused"


def _run(which: int, gate: str, mode: str, *args: Tensor) -> Tensor:
    """Forward (which=0) or backward (1) math for one gate, through the mode's kernels."""
    if mode == "auto":
        mode = _auto(args[0])
    if torch.compiler.is_compiling() or torch.is_grad_enabled():
        # Inside a caller's torch.compile: let it trace the plain math into its own graph.
        # Grad mode on inside a Function means backward(create_graph=True): the plain math is
        # differentiable (eager's backward ops have their own derivatives): double backward works.
        return (_forward_math, _backward_math)[which](*args, gate=gate)
    if mode == "compile" and not _compile_failure:
        try:
            return _compiled()[which](*args, gate=gate)
        except Exception as err:  # noqa: BLE001  (no compiler, unsupported platform: never a crash)
            _compile_failure.append(f"{type(err).__name__}: {err}".splitlines()[0])
            warnings.warn(
                f"torch.compile failed ({_compile_failure[0]}); kernels 'compile' fall back to "
                "the fused eager kernels for the rest of this process",
                RuntimeWarning,
                stacklevel=2,
            )
    return (_forward_kernels, _backward_kernels)[which](*args, gate=gate)


# -- the autograd Functions --------------------------------------------------------------------


class GatedAct(torch.autograd.Function):
    """f(gate) * up that saves only its input x (2h) and recomputes f(gate) in backward."""

    @staticmethod
    def forward(ctx, x: Tensor, gate: str, mode: str) -> Tensor:
        ctx.gate, ctx.mode = gate, mode
        ctx.save_for_backward(x)
        return _run(0, gate, mode, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        return _run(1, ctx.gate, ctx.mode, x, grad.to(x.dtype)), None, None


def _weight_grads(ctx, grad: Tensor, a: Tensor, weight: Tensor) -> tuple:
    """The linear layer's weight and bias gradients from its recomputed input a."""
    grad2 = grad.reshape(-1, grad.shape[-1])
    grad_w = grad_b = None
    if ctx.needs_input_grad[1]:
        # Under autocast (custom_bwd re-enters it) this mm runs in the autocast dtype, as eager's
        # does; the gradient then goes back to the weight's dtype, as eager's cast does.
        grad_w = grad2.t().mm(a.reshape(-1, a.shape[-1])).to(weight.dtype)
    if ctx.needs_input_grad[2]:
        grad_b = grad2.sum(0).to(ctx.bias_dtype)
    return grad_w, grad_b


def _gated_linear_function(device_type: str) -> type[torch.autograd.Function]:
    """The fused gated activation + linear layer for one device type (custom_fwd/custom_bwd
    record and restore autocast for that device type only)."""

    class GatedActLinear(torch.autograd.Function):
        """linear(f(gate) * up): saves x (2h) and the weight, recomputes the product in backward."""

        @staticmethod
        @torch.amp.custom_fwd(device_type=device_type)
        def forward(ctx, x, weight, bias, gate, mode):
            ctx.gate, ctx.mode = gate, mode
            ctx.bias_dtype = None if bias is None else bias.dtype
            ctx.save_for_backward(x, weight)
            a = _run(0, gate, mode, x)
            return F.linear(a, weight, bias)  # autocast casts here exactly as in eager

        @staticmethod
        @torch.amp.custom_bwd(device_type=device_type)
        def backward(ctx, grad):
            x, weight = ctx.saved_tensors
            a = _run(0, ctx.gate, ctx.mode, x)  # recomputed: the h per token not kept
            grad_w, grad_b = _weight_grads(ctx, grad, a, weight)
            del a  # freed before grad_a and grad_x exist: a lower transient peak
            grad_x = None
            if ctx.needs_input_grad[0]:
                grad_x = _run(1, ctx.gate, ctx.mode, x, grad.matmul(weight).to(x.dtype))
            return grad_x, grad_w, grad_b, None, None

    return GatedActLinear


# One class per device type, built once here rather than on first use, so a caller's
# torch.compile finds plain classes (building a class inside a traced call breaks its graph).
GATED_LINEAR = {device: _gated_linear_function(device) for device in DEVICES}


# -- entry points ----------------------------------------------------------------------------


def fusable(gate: str, x: Tensor) -> bool:
    """Whether the fused kernels cover this gate and tensor."""
    return gate in GATES and x.device.type in DEVICES and x.dtype.is_floating_point


def gated_linear(act: nn.Module, x: Tensor, linear: nn.Linear, mode: str) -> Tensor:
    """linear(act(x)) for a gated activation `act` (a GatedActivation: `act.gate` names its gate
    function), the gated FFN's second half, as one autograd node that saves x and the weight,
    not f(gate) nor the product: d + 2h per token instead of d + 4h. Mode "eager", a gate
    without kernels, a Linear subclass or another device runs linear(act(x)) as written."""
    if mode == "eager" or type(linear) is not nn.Linear or not fusable(act.gate, x):
        return linear(act(x))
    return GATED_LINEAR[x.device.type].apply(x, linear.weight, linear.bias, act.gate, mode)

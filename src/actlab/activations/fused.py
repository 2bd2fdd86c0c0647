"""Gated activations and the FFN's activation + output projection as autograd Functions that keep
only their input for backward and recompute the activation there.

Memory. Eager autograd keeps, per token, for c_fc -> f(gate) * up -> c_proj: the block input (d),
c_fc's output (2h, through the gate and up views), f(gate) (h) and the product (h, c_proj's input):
d + 4h. `GatedAct` keeps only its 2h input (d + 3h, as c_proj still keeps the product);
`act_linear` fuses the activation with c_proj and keeps 2h plus c_proj's weight, a parameter that
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
16-25x (eager) to 10-15x (fused); with an allocator that reuses memory, eager is 3.5-6.7x, fused
3.0-7.8x (no allocation left to save, one recomputed f(gate) to pay) and torch.compile 2.5-4.5x.
In a GPT training step the activation is a few percent of the time: fused and compile steps
were within 4% of eager's.

Choice: the default is `fused`, memory for free and no compiler. `compile` runs the same math
through torch.compile (inductor: one loop for forward, one for backward): 3-7 s of start-up in
each process (about 20 s with a cold cache under /tmp) that a smoke run or a sweep worker never
earns back on CPU, so it is opt-in. Modes:

    eager    the plain module composition f(gate) * up, then c_proj (the reference)
    fused    the Functions above with aten kernels (default)
    compile  the Functions with torch.compile'd kernels; if compilation fails, a warning once and
             the fused kernels from then on, never a crash

A module's `mode` attribute picks one; None (the default) follows the environment variable
ACTLAB_FUSED = 0 | 1 | compile (eager | fused | compile), read on every call. The fused paths run
only where nothing can tell the difference: no hook on the activation's gate function (or, for
`act_linear`, on the activation or the linear layer), a CPU or CUDA floating tensor. Double
backward (create_graph=True) works: backward then runs the differentiable math.
"""
from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as _module

ENV = "ACTLAB_FUSED"
_ENV_VALUES = {"0": "eager", "1": "fused", "compile": "compile"}
MODES = ("eager", "fused", "compile")
_DEVICES = ("cpu", "cuda")  # the device types these kernels and the autocast handling are for

_aten = torch.ops.aten


def resolve_mode(mode: str | None = None) -> str:
    """`mode` checked, or the mode ACTLAB_FUSED asks for when `mode` is None (default 'fused')."""
    if mode is None:
        raw = os.environ.get(ENV, "1").strip().lower()
        if raw not in _ENV_VALUES and raw not in MODES:
            raise ValueError(f"{ENV}={raw!r}: use 0 (eager), 1 (fused) or compile")
        mode = _ENV_VALUES.get(raw, raw)
    if mode not in MODES:
        raise ValueError(f"unknown fusion mode {mode!r}; one of {', '.join(MODES)}")
    return mode


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


def _forward_kernels(x: Tensor, gate: str) -> Tensor:
    """f(g) * up in two passes into one new tensor."""
    g, up = x.chunk(2, dim=-1)
    out = torch.empty(g.shape, dtype=x.dtype, device=x.device)
    spec = GATES[gate]
    if spec.f_into is None:
        return torch.mul(g, up, out=out)
    spec.f_into(g, out)
    return out.mul_(up)


def _backward_kernels(x: Tensor, grad: Tensor, gate: str) -> Tensor:
    """[grad * up * f'(g), grad * f(g)] written straight into the two halves of one new tensor,
    so no cat; the gate half is (grad * up) * f'(g), eager autograd's order."""
    g, up = x.chunk(2, dim=-1)
    grad_x = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    d_g, d_up = grad_x.chunk(2, dim=-1)
    spec = GATES[gate]
    if spec.f_into is None:
        torch.mul(grad, up, out=d_g)
        torch.mul(grad, g, out=d_up)
        return grad_x
    spec.f_into(g, d_up)  # f(g) first: the sigmoid's derivative reads it
    torch.mul(grad, up, out=d_g)
    spec.df_(d_g, g, d_up)
    d_up.mul_(grad)
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


def _run(which: int, gate: str, mode: str, *args: Tensor) -> Tensor:
    """Forward (which=0) or backward (1) math for one gate, through the mode's kernels."""
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
                f"torch.compile failed ({_compile_failure[0]}); {ENV}=compile falls back to "
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
    """c_proj's weight and bias gradients from its recomputed input a."""
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


def _plain_linear_function(device_type: str) -> type[torch.autograd.Function]:
    """linear(act(x)) for a plain elementwise act: saves x and the weight; backward recomputes
    act(x) and differentiates it with autograd (act's own backward, so any registry entry works)."""

    class ActLinear(torch.autograd.Function):
        @staticmethod
        @torch.amp.custom_fwd(device_type=device_type)
        def forward(ctx, x, weight, bias, act):
            ctx.act, ctx.bias_dtype = act, None if bias is None else bias.dtype
            ctx.save_for_backward(x, weight)
            return F.linear(act(x), weight, bias)

        @staticmethod
        @torch.amp.custom_bwd(device_type=device_type)
        def backward(ctx, grad):
            x, weight = ctx.saved_tensors
            create_graph = torch.is_grad_enabled()  # backward(create_graph=True)
            with torch.enable_grad():
                leaf = x if create_graph else x.detach().requires_grad_(ctx.needs_input_grad[0])
                a = ctx.act(leaf)
            grad_w, grad_b = _weight_grads(ctx, grad, a if create_graph else a.detach(), weight)
            grad_x = None
            if ctx.needs_input_grad[0]:
                # Differentiate through the graph edge, not the tensor, so a is freed first.
                edge, a_dtype = torch.autograd.graph.get_gradient_edge(a), a.dtype
                del a
                grad_a = grad.matmul(weight).to(a_dtype)
                (grad_x,) = torch.autograd.grad(edge, leaf, grad_a, create_graph=create_graph)
            return grad_x, grad_w, grad_b, None

    return ActLinear


# One class per device type, built once here rather than on first use, so a caller's
# torch.compile finds plain classes (building a class inside a traced call breaks its graph).
GATED_LINEAR = {device: _gated_linear_function(device) for device in _DEVICES}
PLAIN_LINEAR = {device: _plain_linear_function(device) for device in _DEVICES}


# -- entry points ----------------------------------------------------------------------------


def hooked(*modules: nn.Module) -> bool:
    """True when a forward or backward hook (global or on any of `modules`) would see the
    module's own call, which a fused path skips. nn.Module keeps hooks in these dicts."""
    if (_module._global_forward_hooks or _module._global_forward_pre_hooks
            or _module._global_backward_hooks or _module._global_backward_pre_hooks):
        return True
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
        for m in modules
    )


def fusable(gate: str, x: Tensor) -> bool:
    """Whether the fused kernels cover this gate and tensor."""
    return gate in GATES and x.device.type in _DEVICES and x.dtype.is_floating_point


def act_linear(act: nn.Module, x: Tensor, linear: nn.Linear, mode: str | None = None) -> Tensor:
    """linear(act(x)), the FFN's second half, as one autograd node where that saves memory:

    a registry gated activation (GatedActivation)  saves x and W, not f(gate) nor the product;
    a registry plain activation or a formula       saves x and W, not act(x).
    Anything else, any hook on act, its gate function or linear, or mode 'eager' (the argument,
    else act.mode, else ACTLAB_FUSED) runs linear(act(x)) as written.
    """
    from actlab.activations.gated import GatedActivation  # here: gated.py imports this module

    mode = resolve_mode(mode if mode is not None else getattr(act, "mode", None))
    if mode == "eager" or type(linear) is not nn.Linear or x.device.type not in _DEVICES:
        return linear(act(x))
    if isinstance(act, GatedActivation):
        if not fusable(act.gate, x) or hooked(act, act.gate_fn, linear):
            return linear(act(x))
        fn = GATED_LINEAR[x.device.type]
        return fn.apply(x, linear.weight, linear.bias, act.gate, mode)
    if _recomputable(act) and x.dtype.is_floating_point and not hooked(act, linear):
        return PLAIN_LINEAR[x.device.type].apply(x, linear.weight, linear.bias, act)
    return linear(act(x))


def _recomputable(act: nn.Module) -> bool:
    """A registered plain activation class or a formula (deterministic, without parameters, so
    running it again in backward gives the forward's values) that keeps more than its output."""
    from actlab.activations.formula import FormulaActivation
    from actlab.activations.registry import get_spec, names

    if any(True for _ in act.parameters()) or any(True for _ in act.buffers()):
        return False
    known = isinstance(act, FormulaActivation) or any(
        type(act) is get_spec(name).factory for name in names(gated=False)
    )
    return known and _keeps_more_than_output(act)


_KEEPS_MORE: dict[tuple[type, str], bool] = {}


def _keeps_more_than_output(act: nn.Module) -> bool:
    """Whether autograd keeps anything but act's output: relu, tanh or sigmoid keep only the
    output, which c_proj keeps anyway, so recomputing them would cost time and save nothing.
    Asked once per class and settings (extra_repr: beta, slope, formula) on a 4-value tensor."""
    key = (type(act), act.extra_repr())
    if key not in _KEEPS_MORE:
        kept: list[Tensor] = []
        # Asked with autograd on, even from an evaluation under no_grad or inference_mode.
        hooks = torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t)
        with torch.inference_mode(False), torch.enable_grad(), hooks:
            y = act(torch.linspace(-2.0, 2.0, 4, requires_grad=True))
        ptr = y.untyped_storage().data_ptr()
        _KEEPS_MORE[key] = any(t.untyped_storage().data_ptr() != ptr for t in kept)
    return _KEEPS_MORE[key]

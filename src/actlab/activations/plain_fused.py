"""The FFN's plain activation + output projection as one autograd Function that keeps only its
input for backward and recomputes the activation there (fused.act_linear picks it), and the
weight-gradient helper it shares with fused.py's gated Function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEVICES = ("cpu", "cuda")  # the device types the fused kernels and the autocast handling are for


def weight_grads(ctx, grad: Tensor, a: Tensor, weight: Tensor) -> tuple:
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
            grad_w, grad_b = weight_grads(ctx, grad, a if create_graph else a.detach(), weight)
            grad_x = None
            if ctx.needs_input_grad[0]:
                # Differentiate through the graph edge, not the tensor, so a is freed first.
                edge, a_dtype = torch.autograd.graph.get_gradient_edge(a), a.dtype
                del a
                grad_a = grad.matmul(weight).to(a_dtype)
                (grad_x,) = torch.autograd.grad(edge, leaf, grad_a, create_graph=create_graph)
            return grad_x, grad_w, grad_b, None

    return ActLinear


PLAIN_LINEAR = {device: _plain_linear_function(device) for device in DEVICES}


def recomputable(act: nn.Module) -> bool:
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

"""The activation registry: every activation actlab can train with, by name, formula or import path.

    from actlab.activations import get, get_spec, measure
    get("swiglu")                       # a fresh module on every call
    get_spec("x * sigmoid(1.702 * x)")  # a formula in x, parsed safely
    measure("sigmoid")["max_abs_grad"]  # 0.25

Add your own with the decorator:

    @register("my_act", formula="x * tanh(x)", paper="...")
    class MyAct(nn.Module):
        def forward(self, x): return x * torch.tanh(x)
"""
# Registration order is import order: plain functions first, then the gated ones built on them,
# then the Hugging Face names (aliases and the ACT2FN functions actlab had no entry for).
from actlab.activations import functions, gated, hf_names  # noqa: F401  (imported to register entries)
from actlab.activations.formula import FormulaActivation, parse_formula
from actlab.activations.functions import Swish
from actlab.activations.gated import GatedActivation
from actlab.activations.properties import derivative, measure
from actlab.activations.registry import get, get_spec, names, register
from actlab.activations.spec import ActivationError, ActSpec

__all__ = [
    "ActSpec",
    "ActivationError",
    "FormulaActivation",
    "GatedActivation",
    "Swish",
    "derivative",
    "get",
    "get_spec",
    "measure",
    "names",
    "parse_formula",
    "register",
]

"""Swap the MLP activation of a Hugging Face model for an actlab registry entry, in place.

What counts as an MLP activation, by the attributes transformers' models use:
  gated MLPs (Llama, Mistral, Qwen2, Gemma; Phi-3, T5 v1.1): `act_fn` (or another of the names
      below) beside gate_proj and up_proj, a fused gate_up_proj, or wi_0 and wi_1; the
      activation is the gate function, so a gated actlab name
      (swiglu, geglu, reglu, ...) sets act_fn to its gate (ActSpec.gate), a plain name to itself;
  BERT-like encoders: `intermediate_act_fn` of BertIntermediate (and its copies);
  anything else (GPT-2's GPT2MLP.act, OPT's activation_fn, ...): an `act`, `act_fn`,
      `activation_fn` or `activation` attribute beside at least two linear layers, which leaves
      lone activations such as BERT's pooler tanh (one Linear) alone.
The model's config records the new name (hidden_act / activation_function) when transformers'
ACT2FN has it, so save_pretrained and from_pretrained keep the swap.
"""
from __future__ import annotations

from torch import nn

from actlab import activations
from actlab.activations.gated import GatedActivation
from actlab.errors import ActlabError
from actlab.hf.names import hf_act_name

ACT_ATTRS = ("act", "act_fn", "activation_fn", "activation")
CONFIG_ATTRS = ("hidden_act", "activation_function")
# The children that make an MLP gated: Llama/Mistral/Qwen2/Gemma, Phi-3's fused pair, T5's GeGLU.
GATE_LAYERS = ({"gate_proj", "up_proj"}, {"gate_up_proj"}, {"wi_0", "wi_1"})


def swap_activation(model: nn.Module, name: str) -> list[str]:
    """Replace every MLP activation of `model` by the registry entry `name`, each MLP getting a
    fresh module; returns the dotted paths replaced ("model.layers.0.mlp.act_fn", ...), in
    module order. A gated name for plain MLPs, or a model with no MLP activation that it
    recognises, is a one-line ActlabError and nothing is changed."""
    spec = activations.get_spec(name)
    sites = _sites(model)
    if not sites:
        raise ActlabError(
            f"found no MLP activation in {type(model).__name__}: swap_activation knows gated MLPs "
            "(gate_proj, up_proj, down_proj, act_fn), BERT's intermediate_act_fn, and act, act_fn, "
            "activation_fn or activation beside two linear layers")
    fused = [p for p, m, attr, _ in sites if isinstance(getattr(m, attr), GatedActivation)]
    if fused:
        raise ActlabError(f"{fused[0]} is an actlab gated MLP, whose activation takes both halves: "
                          "set ModelConfig.act and build the model again instead")
    plain = sorted({type(m).__name__ for _, m, _, gated in sites if not gated})
    if spec.gated and plain:
        raise ActlabError(
            f"{spec.name!r} is gated (f(xW) * xV), but the MLPs of {type(model).__name__} "
            f"({', '.join(plain)}) have no gate projection: use its gate function "
            f"{spec.gate!r} here, or a model with gated MLPs (Llama-style gate_proj/up_proj)")
    fn = spec.gate if spec.gated else spec.name
    replaced = []
    for path, module, attr, _ in sites:
        setattr(module, attr, activations.get(fn))
        replaced.append(f"{path}.{attr}" if path else attr)
    _record(model, fn)
    return replaced


def _sites(model: nn.Module) -> list[tuple[str, nn.Module, str, bool]]:
    """(path, module, attribute, gated) of each MLP activation, outermost first; nothing inside
    an activation that is itself being replaced is looked at."""
    found: list[tuple[str, nn.Module, str, bool]] = []
    claimed: list[str] = []
    for path, module in model.named_modules():
        if any(path == c or path.startswith(c + ".") for c in claimed):
            continue
        site = _site(module)
        if site is not None:
            attr, gated = site
            found.append((path, module, attr, gated))
            claimed.append(f"{path}.{attr}" if path else attr)
    return found


def _site(module: nn.Module) -> tuple[str, bool] | None:
    children = set(dict(module.named_children()))
    if any(gate <= children for gate in GATE_LAYERS):
        for attr in ACT_ATTRS:
            if _is_act(module, attr):
                return attr, True
    if _is_act(module, "intermediate_act_fn"):
        return "intermediate_act_fn", False
    linears = sum(1 for c in module.children() if _is_linear(c))
    for attr in ACT_ATTRS:
        if linears >= 2 and _is_act(module, attr):
            return attr, False
    return None


def _is_act(module: nn.Module, attr: str) -> bool:
    value = getattr(module, attr, None)
    return callable(value) and not isinstance(value, (nn.ModuleList, nn.ModuleDict, type))


def _is_linear(module: nn.Module) -> bool:
    """nn.Linear, or transformers' Conv1D (GPT-2), known by its 2-d weight and its nf/nx."""
    return isinstance(module, nn.Linear) or (
        hasattr(module, "nf") and getattr(getattr(module, "weight", None), "ndim", 0) == 2)


def _record(model: nn.Module, fn: str) -> None:
    config = getattr(model, "config", None)
    if config is None:
        return
    try:
        hf_name = hf_act_name(fn)
    except ActlabError:
        hf_name = None  # no ACT2FN name: the config keeps its old one, and says so below
    for attr in CONFIG_ATTRS:
        if isinstance(getattr(config, attr, None), str) and hf_name is not None:
            setattr(config, attr, hf_name)
    config.actlab_activation = fn

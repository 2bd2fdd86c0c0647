"""Activation names between actlab's registry and transformers' ACT2FN.

Every ACT2FN key resolves in actlab's registry (activations/hf_names.py), so Hugging Face to
actlab is a lookup. actlab to Hugging Face picks, for the registry entry, the ACT2FN key that
computes it: the conventional one where several do (tanh GELU -> "gelu_new", GPT-2's own name).
A formula or import path maps when it is the same function as such an entry: equal to 1e-9 in
float64 on [-8, 8] and at +-30, a tolerance that only rounding meets, never an approximation.
"""
from __future__ import annotations

import torch

from actlab import activations
from actlab.activations.spec import ActSpec
from actlab.errors import ActlabError
from actlab.hf.deps import act2fn

# Where several ACT2FN keys compute one entry, the one written out (the others still load).
PREFERRED = {"gelu_tanh": "gelu_new", "identity": "linear", "silu": "silu"}
# ACT2FN entries with learned parameters that an exported checkpoint cannot hold exactly.
NOT_EXPORTABLE = {
    "xielu": "Hugging Face's xielu keeps its learned parameters in bfloat16, which cannot hold "
             "actlab's fixed 0.8 and 0.5 exactly",
}
_GRID = torch.cat([torch.linspace(-8, 8, 2001, dtype=torch.float64),
                   torch.tensor([-30.0, 30.0], dtype=torch.float64)])


def actlab_name(hf_name: str) -> str:
    """The registry entry a Hugging Face activation name (an ACT2FN key) stands for."""
    if not isinstance(hf_name, str) or hf_name not in act2fn():
        raise ActlabError(f"{hf_name!r} is not an activation name of transformers' ACT2FN")
    return activations.get_spec(hf_name).name


def hf_act_name(act: str | ActSpec) -> str:
    """The ACT2FN key that computes actlab's plain activation `act` exactly, or a one-line
    ActlabError saying why there is none."""
    spec = activations.get_spec(act)
    if spec.gated:
        raise ActlabError(
            f"activation {spec.name!r} is gated, and GPT-2's MLP has no gate; the Hugging Face "
            "models with gated MLPs (Llama, Mistral, Qwen2) use rotary positions, which actlab's "
            "learned position embeddings are not, so no Hugging Face architecture computes this "
            "model exactly")
    keys = list(act2fn())
    by_entry: dict[str, list[str]] = {}
    for key in keys:
        by_entry.setdefault(activations.get_spec(key).name, []).append(key)
    entry = spec.name if spec.name in by_entry else _same_function(spec, by_entry)
    if entry is None:
        raise ActlabError(
            f"activation {spec.name!r} has no equivalent in transformers' ACT2FN "
            f"({', '.join(sorted(by_entry))} have one), so a Hugging Face model cannot compute it")
    name = PREFERRED.get(entry, entry if entry in by_entry[entry] else by_entry[entry][0])
    if name in NOT_EXPORTABLE:
        raise ActlabError(f"activation {spec.name!r} cannot be exported: {NOT_EXPORTABLE[name]}")
    return name


def _same_function(spec: ActSpec, by_entry: dict[str, list[str]]) -> str | None:
    """The registry entry with an ACT2FN key that `spec` (a formula or import path) equals."""
    if spec.fn is None:
        return None
    with torch.no_grad():
        try:
            mine = spec.fn(_GRID.clone())
        except Exception:  # a user's function that cannot take float64: no match, said above
            return None
        for entry in by_entry:
            theirs = activations.get_spec(entry).fn(_GRID.clone())
            if mine.shape == theirs.shape and torch.allclose(mine.double(), theirs, rtol=1e-9, atol=1e-9):
                return entry
    return None

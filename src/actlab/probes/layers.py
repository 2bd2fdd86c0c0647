"""What a probe needs to know about one activation site, and how to list them for actlab's two
models: the GPT (one site per block) and the deep MLP (one per hidden layer)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from actlab import activations
from actlab.activations import ActSpec


@dataclass
class LayerRef:
    """One "layer" as the probes see it: an activation and the modules around it.

    `act`'s forward input is the pre-activation (for gated entries the last dimension is 2h and
    the gate is the first half); `consumer` is the Linear that reads the activation's output;
    `weights` are the parameters whose gradient norms are reported for this layer. `block` and
    `branch_in` exist only in a residual network: the block whose input is the residual stream,
    and the module at the entrance of its FFN branch (GPT: `ln_2`).
    """

    name: str
    act: nn.Module
    spec: ActSpec
    consumer: nn.Linear
    weights: dict[str, nn.Parameter]
    block: nn.Module | None = None
    branch_in: nn.Module | None = None


def gpt_layers(model: nn.Module) -> list[LayerRef]:
    """One LayerRef per transformer block of an actlab GPT, in depth order, named "h.<i>"."""
    spec = activations.get_spec(model.config.act)
    kernels = getattr(model.config, "kernels", "eager")
    if spec.gated and kernels != "eager":
        # The fused kernels compute act and c_proj in one node without calling either module,
        # so no hook would see them; eager kernels give the same numbers and call both.
        raise ValueError(f"the probes hook the FFN's activation and c_proj, which the {kernels!r} "
                         f"kernels of a gated FFN ({spec.name}) never call: build the model with "
                         "ModelConfig(kernels='eager'), which computes the same numbers")
    layers = []
    for i, block in enumerate(model.transformer.h):
        mlp = block.mlp
        layers.append(
            LayerRef(
                name=f"h.{i}",
                act=mlp.act,
                spec=spec,
                consumer=mlp.c_proj,
                weights={"c_fc.weight": mlp.c_fc.weight, "c_proj.weight": mlp.c_proj.weight},
                block=block,
                branch_in=block.ln_2,
            )
        )
    return layers


def mlp_layers(model: nn.Module) -> list[LayerRef]:
    """One LayerRef per hidden layer of a DeepMLP, named "layer<i>": its activation, the Linear
    feeding it (weights["fc.weight"]) and the Linear consuming its output (the next layer, or
    the head)."""
    spec = activations.get_spec(model.act_name)
    consumers = [*model.fc[1:], model.head]
    return [
        LayerRef(name=f"layer{i}", act=model.acts[i], spec=spec, consumer=consumers[i],
                 weights={"fc.weight": model.fc[i].weight})
        for i in range(len(model.fc))
    ]


def layers_of(model: nn.Module) -> list[LayerRef]:
    """The activation sites of an actlab GPT (gpt_layers) or DeepMLP (mlp_layers); any other
    model is described by a list of LayerRef built by hand."""
    if hasattr(model, "transformer"):
        return gpt_layers(model)
    if all(hasattr(model, k) for k in ("fc", "acts", "head", "act_name")):
        return mlp_layers(model)
    raise TypeError(f"the probes find the layers of actlab's GPT and DeepMLP by themselves; for a "
                    f"{type(model).__name__}, pass a list of LayerRef (and params=)")

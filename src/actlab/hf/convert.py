"""actlab's GPT <-> Hugging Face GPT2LMHeadModel, weight for weight, same logits.

The two models compute the same function when actlab's config is GPT-2's architecture:
pre-LN blocks with LayerNorm (eps 1e-5), softmax attention scaled by 1/sqrt(head size),
learned positions, a dense two-matrix MLP with a plain activation, tied embeddings and a
softmax head. Parameter names are the same; the one difference is layout: GPT-2's Conv1D
stores a weight as (in, out) where nn.Linear stores (out, in), so c_attn, c_fc and c_proj
weights are transposed on the way. A model without biases (bias=False) is GPT-2 with zero
biases. Anything else has no exact Hugging Face counterpart and is refused in one line.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from actlab.config import ModelConfig
from actlab.errors import ActlabError
from actlab.hf.deps import transformers
from actlab.hf.names import actlab_name, hf_act_name
from actlab.nn.gpt import GPT, mlp_hidden

LN_EPS = 1e-5  # actlab's LayerNorm eps (nn.gpt.make_norm)
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
PRELU_SLOPE = 0.25  # actlab's prelu entry: PReLU at its initial slope

# (config field, the value GPT-2 needs, why any other value has no GPT-2 equivalent)
_REFUSED = (
    ("norm", "layernorm", "GPT-2 normalises with LayerNorm; the Hugging Face models with RMSNorm "
                          "(Llama-style) also use rotary positions, which actlab's learned "
                          "positions are not"),
    ("attention", "softmax", "GPT-2's attention is plain softmax attention"),
    ("head", "softmax", "GPT2LMHeadModel's head is softmax over the vocabulary, with no learned "
                        "logit bias"),
    ("ffn", "dense", "GPT-2's MLP is one dense FFN per block, not a mixture of experts"),
    ("residual", True, "GPT-2's blocks have residual connections"),
)


def hf_mapping(cfg: ModelConfig) -> str:
    """What `cfg` becomes in Hugging Face, in one line, or a one-line ActlabError saying why
    it has no exact counterpart there."""
    for field, needed, why in _REFUSED:
        value = getattr(cfg, field)
        if value != needed:
            raise ActlabError(f"{field} {value!r} cannot be exported to Hugging Face GPT-2: {why}")
    act = hf_act_name(cfg.act)
    biases = "with biases" if cfg.bias else "bias=False as zero biases"
    return (f"GPT2LMHeadModel: n_layer={cfg.n_layer}, n_embd={cfg.n_embd}, n_head={cfg.n_head}, "
            f"n_inner={mlp_hidden(cfg, gated=False)}, n_positions={cfg.block_size}, "
            f"vocab_size={cfg.vocab_size}, activation_function={act!r}, {biases}")


def hf_gpt2_config(cfg: ModelConfig):
    """The transformers.GPT2Config of `cfg` (refused as hf_mapping says)."""
    hf_mapping(cfg)
    tf = transformers()
    return tf.GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
        n_layer=cfg.n_layer, n_head=cfg.n_head, n_inner=mlp_hidden(cfg, gated=False),
        activation_function=hf_act_name(cfg.act), layer_norm_epsilon=LN_EPS,
        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        initializer_range=cfg.init_std, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=None,
    )


def to_hf_gpt2(model: GPT):
    """A transformers.GPT2LMHeadModel with `model`'s weights (copies), in eval mode."""
    if not isinstance(model, GPT):
        raise ActlabError(f"to_hf_gpt2 takes an actlab GPT, got {type(model).__name__}")
    hf_config = hf_gpt2_config(model.config)
    tf = transformers()
    with torch.random.fork_rng(devices=[]):  # its init is overwritten: keep the caller's draws
        hf = tf.GPT2LMHeadModel(hf_config)
    ours = {k: v.detach() for k, v in model.state_dict().items()}
    state = {}
    for key, target in hf.state_dict().items():
        state[key] = _hf_tensor(key, target, ours)
    unused = set(ours) - set(state) - {"lm_head.weight"}
    if unused:
        raise ActlabError(f"actlab weights with no GPT-2 place: {', '.join(sorted(unused)[:5])}")
    hf.load_state_dict(state, strict=True)
    return hf.to(next(model.parameters()).device).eval()


def _hf_tensor(key: str, target: torch.Tensor, ours: Mapping[str, torch.Tensor]) -> torch.Tensor:
    if key in ours:
        value = ours[key].t() if key.endswith(CONV1D) else ours[key]
    elif key.endswith(".bias") and key[: -len("bias")] + "weight" in ours:
        value = torch.zeros_like(target)  # bias=False: GPT-2 with zero biases
    elif key.endswith("mlp.act.weight"):  # prelu's slope (a parameter in Hugging Face only)
        value = torch.full_like(target, PRELU_SLOPE)
    else:
        raise ActlabError(f"GPT-2 weight {key} has no actlab counterpart")
    if value.shape != target.shape:
        raise ActlabError(f"{key}: actlab's shape {tuple(value.shape)} is not GPT-2's "
                          f"{tuple(target.shape)}")
    return value.to(target.dtype).contiguous()


def from_hf_gpt2(hf_model_or_state_dict: Any, config: Any = None) -> GPT:
    """actlab's GPT (eval mode) from a GPT2LMHeadModel or GPT2Model, or from the state dict of
    one together with its GPT2Config (or that config as a dict). The activation becomes the
    registry entry of its ACT2FN name; a config GPT-2 allows but actlab cannot compute exactly
    is refused in one line."""
    tf = transformers()
    source = hf_model_or_state_dict
    if isinstance(source, nn.Module):
        config = config if config is not None else getattr(source, "config", None)
        state = source.state_dict()
    elif isinstance(source, Mapping):
        if config is None:
            raise ActlabError("a GPT-2 state dict needs its config: from_hf_gpt2(state, config=...)")
        state = dict(source)
    else:
        raise ActlabError(f"from_hf_gpt2 takes a GPT-2 model or state dict, got {type(source).__name__}")
    if isinstance(config, Mapping):
        config = tf.GPT2Config(**config)
    if not isinstance(config, tf.GPT2Config):
        raise ActlabError(f"from_hf_gpt2 needs a GPT2Config, got {type(config).__name__}")
    state = {k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k: v
             for k, v in state.items()}
    cfg = actlab_config(config)
    _check_weights(state, config)
    with torch.random.fork_rng(devices=[]):
        model = GPT(cfg)
    expected = model.state_dict()
    loaded = {}
    for key, target in expected.items():
        name = "transformer.wte.weight" if key == "lm_head.weight" else key
        if name not in state:
            raise ActlabError(f"the GPT-2 weights have no {name}")
        value = state[name].detach()
        value = value.t() if key.endswith(CONV1D) else value
        if value.shape != target.shape:
            raise ActlabError(f"{name}: shape {tuple(value.shape)}, but the config implies "
                              f"{tuple(target.shape)}")
        loaded[key] = value.to(target.dtype)
    model.load_state_dict(loaded, strict=True)
    return model.eval()


def actlab_config(config) -> ModelConfig:
    """The ModelConfig of a GPT2Config (one-line ActlabError where actlab differs)."""
    checks = (
        (math.isclose(config.layer_norm_epsilon, LN_EPS, rel_tol=1e-6),
         f"layer_norm_epsilon {config.layer_norm_epsilon:g} (actlab's LayerNorm uses {LN_EPS:g})"),
        (config.scale_attn_weights, "scale_attn_weights=False (actlab scales by 1/sqrt(head size))"),
        (not config.scale_attn_by_inverse_layer_idx, "scale_attn_by_inverse_layer_idx=True"),
        (not getattr(config, "add_cross_attention", False), "cross-attention"),
        (getattr(config, "tie_word_embeddings", True), "untied embeddings (actlab ties the head to wte)"),
    )
    for ok, what in checks:
        if not ok:
            raise ActlabError(f"this GPT-2 has {what}, which actlab's GPT cannot compute")
    act = config.activation_function
    if act == "xielu":
        raise ActlabError("activation_function 'xielu' learns its parameters; actlab's xielu "
                          "fixes them at their initial values, so the model cannot be copied")
    hidden = config.n_inner if config.n_inner is not None else 4 * config.n_embd
    cfg = ModelConfig(vocab_size=config.vocab_size, block_size=config.n_positions,
                      n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd,
                      act=actlab_name(act), mlp_ratio=hidden / config.n_embd,
                      dropout=float(config.resid_pdrop), init_std=config.initializer_range)
    if mlp_hidden(cfg, gated=False) != hidden:
        raise ActlabError(f"n_inner {hidden} is not a width actlab can build at n_embd {config.n_embd}")
    return cfg


def _check_weights(state: Mapping[str, torch.Tensor], config) -> None:
    head = state.get("lm_head.weight")
    if head is not None and not torch.equal(head, state["transformer.wte.weight"]):
        raise ActlabError("lm_head.weight differs from transformer.wte.weight: actlab ties them")
    for key, value in state.items():
        if key.endswith("mlp.act.weight") and not torch.all(value == PRELU_SLOPE):
            raise ActlabError(f"{key}: a learned PReLU slope; actlab's prelu is fixed at "
                              f"{PRELU_SLOPE} (PReLU's initial value)")

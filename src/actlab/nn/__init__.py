"""The models: actlab's GPT-style decoder and the plain deep MLP of the C1/C2 studies.
Architecture only; nothing here knows about measurement (probes hook from outside)."""
from actlab.nn.gpt import GPT, MLP, CausalSelfAttention, GatedMLP, mlp_hidden, sigmoid_attention, sigmoid_head_loss
from actlab.nn.mlp import DeepMLP, default_init

__all__ = ["GPT", "MLP", "CausalSelfAttention", "DeepMLP", "GatedMLP", "default_init", "mlp_hidden",
           "sigmoid_attention", "sigmoid_head_loss"]

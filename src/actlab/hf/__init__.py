"""Hugging Face interop: GPT-2 checkpoints in and out, and activation swaps in any HF model.

    from actlab.hf import to_hf_gpt2, from_hf_gpt2, export_run, swap_activation
    hf = to_hf_gpt2(model)                  # a transformers.GPT2LMHeadModel, same logits
    export_run("runs/gelu", "hf/gelu")      # GPT2LMHeadModel.from_pretrained("hf/gelu") loads it
    swap_activation(llama, "geglu")         # the gated MLPs' act_fn becomes GELU

transformers is an optional dependency (pip install 'actlab[hf]'): importing this package does
not import it; each function that needs it imports it when called.
"""
from actlab.hf.convert import from_hf_gpt2, hf_gpt2_config, hf_mapping, to_hf_gpt2
from actlab.hf.export import EXPORT_FILE, export_model, export_run
from actlab.hf.names import actlab_name, hf_act_name
from actlab.hf.swap import swap_activation

__all__ = [
    "EXPORT_FILE",
    "actlab_name",
    "export_model",
    "export_run",
    "from_hf_gpt2",
    "hf_act_name",
    "hf_gpt2_config",
    "hf_mapping",
    "swap_activation",
    "to_hf_gpt2",
]

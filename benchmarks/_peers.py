"""The implementations benchmarks/throughput.py races, built identically seeded: actlab's GPT
(eager or through actlab.training.compile), Hugging Face GPT2LMHeadModel (gelu_new or gelu_pytorch_tanh,
SDPA attention) and a plain reference GPT written here the straightforward way.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from actlab.training.compile import compile_model
from actlab.config import ModelConfig, TrainConfig
from actlab.nn.gpt import GPT
from actlab.training.loop import make_optimizer

VOCAB = 96  # a character-level vocabulary
OPT = dict(lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1)  # TrainConfig's defaults


class RefBlock(nn.Module):
    """Pre-LN block written the straightforward way: fused QKV, SDPA, tanh-GELU MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.c_attn, self.c_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.c_attn(self.ln_1(x)).view(B, T, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, T, head_size)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln_2(x))


class RefGPT(nn.Module):
    def __init__(self, vocab: int, context: int, layers: int, width: int, heads: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = nn.ModuleList(RefBlock(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied embeddings
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1))


def decay_groups(model: nn.Module) -> list[dict]:
    params = list(model.parameters())  # tied weights appear once
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": OPT["weight_decay"]},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def actlab_config(size: dict, act: str = "gelu_tanh") -> ModelConfig:
    return ModelConfig(vocab_size=VOCAB, block_size=size["block_size"], n_layer=size["n_layer"],
                       n_head=size["n_head"], n_embd=size["n_embd"], act=act)


def build(impl: str, size: dict, device: torch.device):
    """(loss_fn(x, y), model, optimizer) for one implementation, seeded identically."""
    torch.manual_seed(0)
    L, C, H, T = size["n_layer"], size["n_embd"], size["n_head"], size["block_size"]
    if impl.startswith("actlab"):
        cfg = actlab_config(size, "gelu" if impl == "actlab_gelu" else "gelu_tanh")
        model = GPT(cfg).to(device)
        tcfg = TrainConfig(model=cfg, lr=OPT["lr"], beta1=OPT["betas"][0], beta2=OPT["betas"][1],
                           weight_decay=OPT["weight_decay"])
        forward = compile_model(model) if impl == "actlab_compiled" else model
        return (lambda x, y: forward(x, y)[1]), model, make_optimizer(model, tcfg)
    if impl.startswith("hf_"):
        from transformers import GPT2Config, GPT2LMHeadModel

        hcfg = GPT2Config(vocab_size=VOCAB, n_positions=T, n_embd=C, n_layer=L, n_head=H,
                          activation_function=impl[3:], resid_pdrop=0.0, embd_pdrop=0.0,
                          attn_pdrop=0.0, bos_token_id=None, eos_token_id=None, use_cache=False,
                          attn_implementation="sdpa")
        model = GPT2LMHeadModel(hcfg).to(device)

        def loss_fn(x, y):
            logits = model(input_ids=x, use_cache=False).logits
            return F.cross_entropy(logits.view(-1, VOCAB).float(), y.view(-1))
    else:
        loss_fn = model = RefGPT(VOCAB, T, L, C, H).to(device)
    model.train()
    return loss_fn, model, torch.optim.AdamW(decay_groups(model), lr=OPT["lr"], betas=OPT["betas"])

"""A GPT-style decoder in plain PyTorch whose FFN activation comes from the registry.

Reads top to bottom, leaves first: norms, attention, the two MLP shapes, block, GPT.
Names follow GPT-2 (`c_attn`, `c_fc`, `c_proj`, `wte`, `wpe`, `ln_f`) so weights can be
copied from Hugging Face checkpoints. The model knows nothing about measurement: probes
attach hooks from outside, which is why the activation is its own named submodule.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from actlab import activations
from actlab.activations import kernels
from actlab.config import ModelConfig
from actlab.nn.moe import MoEFFN


def make_norm(config: ModelConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        # RMSNorm (Zhang & Sennrich 2019): no mean subtraction and no bias.
        return nn.RMSNorm(config.n_embd, eps=1e-5)
    return nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention. `config.attention` picks the score normaliser:

    softmax        softmax(QK^T/sqrt(d)) through the fused SDPA kernel (GPT-2);
    softmax_gated  the same, times a head-specific elementwise sigmoid gate computed from the
                   block input, sigma(x W_g), applied before c_proj (Qiu et al. 2025, "Gated
                   Attention for Large Language Models", the G1 position used by Qwen3-Next);
    sigmoid        sigma(QK^T/sqrt(d) + b) with b = -log(n), n = the number of positions the
                   query attends to (Ramapuram et al. 2024, "Theory, Analysis, and Best
                   Practices for Sigmoid Self-Attention"): each row then starts near a mean;
    sigmoid_nobias the same without b (the ablation that shows why the bias is there).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.kind = config.attention
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        if self.kind == "softmax_gated":
            self.c_gate = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        if self.kind.startswith("sigmoid"):
            y = sigmoid_attention(q, k, v, bias=self.kind == "sigmoid")
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads
        if self.kind == "softmax_gated":
            # one gate per channel, so per head: a head can switch itself off for a token
            y = y * torch.sigmoid(self.c_gate(x))
        return self.c_proj(y)


def sigmoid_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: bool) -> torch.Tensor:
    """Causal sigma(QK^T/sqrt(d) + b) V; with `bias`, b = -log(i + 1) on query row i, the
    number of keys that row sees. Rows are not normalised: that is the point of the variant."""
    T, hs = q.size(-2), q.size(-1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T)
    if bias:
        n = torch.arange(1, T + 1, device=q.device, dtype=scores.dtype)
        scores = scores - torch.log(n).view(T, 1)
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    weights = torch.sigmoid(scores).masked_fill(~causal, 0.0)
    return weights @ v


def mlp_hidden(config: ModelConfig, gated: bool) -> int:
    """Hidden width; a gated MLP has three matrices instead of two, so it gets 2/3 of the
    plain width to keep the parameter count equal (Shazeer 2020, section 2)."""
    hidden = config.mlp_ratio * config.n_embd
    return int(round(hidden * 2 / 3)) if gated else int(round(hidden))


class MLP(nn.Module):
    """x -> act(x W_fc) W_proj, the GPT-2 feed-forward block."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = mlp_hidden(config, gated=False)
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.act = activations.get(config.act)  # a fresh module: hooks stay per layer
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Plain composition, no recomputation: fusing act into c_proj's backward (as GatedMLP
        # does with activations/kernels.py) would save h floats per token but recompute act there, which cost
        # 6-8% of a training step at benchmarks/throughput.py's size S with tanh-GELU and 17%
        # with erf GELU on a 2-core CPU, and it splits a torch.compile graph into pieces.
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GatedMLP(nn.Module):
    """x -> (f(x W) * x V) W_proj (GLU family). W and V live in one Linear of width 2h,
    and the gated activation splits it, so one GEMM produces both halves."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = mlp_hidden(config, gated=True)
        self.c_fc = nn.Linear(config.n_embd, 2 * hidden, bias=config.bias)
        self.act = activations.get(config.act)
        self.act.mode = self.kernels = config.kernels  # chosen here, once (activations/kernels.py)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Unless the kernels are "eager", act and c_proj run as one autograd node: backward keeps
        # c_fc's 2h outputs and recomputes the product, d + 2h per token instead of d + 4h.
        return self.dropout(kernels.gated_linear(self.act, self.c_fc(x), self.c_proj, self.kernels))


class Block(nn.Module):
    """Pre-LN transformer block (GPT-2): x + attn(ln(x)), then x + mlp(ln(x)); `mlp` is the
    plain or gated MLP, or with `config.ffn == "moe"` a mixture of experts (nn.moe.MoEFFN)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.residual = config.residual
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        if config.ffn == "moe":  # top-k mixture of experts of the dense width (nn/moe.py)
            self.mlp = MoEFFN(config, mlp_hidden(config, gated=False))
        else:
            self.mlp = GatedMLP(config) if activations.get_spec(config.act).gated else MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.residual:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))
        # Without the identity path every gradient must pass through both branches.
        return self.mlp(self.ln_2(self.attn(self.ln_1(x))))


class GPT(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=make_norm(config),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.head == "sigmoid":
            # Independent sigmoids start at p = 1/2 per token, i.e. an expected sum of V/2.
            # A shared learnable logit bias initialised at -log(V - 1) makes each p start at
            # 1/V instead (the prior-bias init of Lin et al. 2017; SigLIP, Zhai et al. 2023,
            # learns such a bias for the same reason).
            self.head_bias = nn.Parameter(torch.tensor(-math.log(max(config.vocab_size - 1, 1))))
        # Tied input/output embeddings (Press & Wolf 2017), as in GPT-2.
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2 scales the projections that write into the residual stream by
        # 1/sqrt(2 * n_layer) so the stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=config.init_std / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (token embeddings are
        tied to the head, so they count as weights of the output layer)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds block_size {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)
        if self.config.head == "sigmoid":
            logits = logits + self.head_bias
        if targets is None:
            return logits, None
        flat = logits.view(-1, logits.size(-1)).float()
        if self.config.head == "sigmoid":
            return logits, sigmoid_head_loss(flat, targets.view(-1))
        return logits, F.cross_entropy(flat, targets.view(-1))


def sigmoid_head_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of V independent sigmoids against the one-hot target, summed over
    the vocabulary and averaged over tokens.

    Summing over V (not averaging) keeps the true token's term at weight 1, as in softmax
    cross-entropy; averaging would scale its gradient by 1/V and starve learning as the
    vocabulary grows. The V - 1 negative terms are the price of having no normaliser.
    """
    onehot = F.one_hot(targets, logits.size(-1)).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    return bce.sum(-1).mean()

"""A small top-k mixture-of-experts FFN, with the two router score functions in use today.

    softmax   p = softmax(x W_r) over the E experts, the k largest chosen, their weights
              renormalised over the chosen k (Mixtral, Jiang et al. 2024): g = softmax(top-k logits).
    sigmoid   s = sigmoid(x W_r) per expert, the k largest chosen, g = s_chosen / sum(s_chosen)
              (DeepSeek-V3, DeepSeek-AI 2024, section 2.1.2; without its selection-only balancing
              bias and its routed scaling factor).

Both choose the same experts for the same logits (sigmoid is monotonic): the two routers differ
only in the gate weights of the chosen experts and in the gradients the router receives, so a
comparison between them is parameter- and compute-matched by construction.

Sizes. Expert e is a plain MLP x -> act(x W_e + b_e) P_e + c_e of hidden width
h_e = hidden // E, where `hidden` is the dense FFN's width (mlp_ratio * n_embd): the dense
width split evenly between the experts (fine-grained experts). The MoE then has the dense FFN's
matrices plus a router (n_embd * E, no bias) and E output biases instead of one; per token the
k chosen experts are active, k/E of the expert weights (see `moe_param_count`).

Compute. At these sizes all experts are computed for every token and the unchosen ones get
weight 0: the experts' first layers sit side by side in one Linear (`c_fc`, width E * h_e) and
their second layers in another (`c_proj`), so a forward costs about what the dense FFN of the
same width costs, plus the router. The names c_fc / act / c_proj match the dense MLP, so the
GPT-2 init of c_proj and the probes that hook the FFN's activation apply unchanged. A sparse
dispatch would compute only the active k/E; the numbers would be the same.

No load-balancing loss is added: a router may collapse onto a few experts, and `expert_load`
(the fraction of assignments per expert) is what makes that visible.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from actlab import activations

ROUTERS = ("softmax", "sigmoid")


def route(logits: torch.Tensor, k: int, router: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(gate weights, expert indices), each (..., k), from router logits (..., E).

    Chosen by the k largest scores; the weights of a token sum to 1 for both routers."""
    if router == "softmax":
        top, idx = logits.topk(k, dim=-1)
        # softmax over all E, renormalised over the chosen k, is the softmax of the chosen logits
        return torch.softmax(top, dim=-1), idx
    if router == "sigmoid":
        top, idx = torch.sigmoid(logits).topk(k, dim=-1)
        return top / top.sum(dim=-1, keepdim=True), idx
    raise ValueError(f"router must be one of {', '.join(ROUTERS)}; got {router!r}")


def dense_gates(logits: torch.Tensor, k: int, router: str) -> torch.Tensor:
    """(..., E) gate weight of every expert for every token: `route`'s weights, 0 where unchosen."""
    gates, idx = route(logits, k, router)
    return torch.zeros_like(logits).scatter(-1, idx, gates.to(logits.dtype))


def expert_load(logits: torch.Tensor, k: int, router: str) -> list[float]:
    """Fraction of the token-to-expert assignments that go to each expert: sums to 1, a
    balanced router gives 1/E each, a router collapsed onto k experts 1/k to each of those."""
    _, idx = route(logits.detach(), k, router)
    counts = torch.bincount(idx.reshape(-1), minlength=logits.size(-1)).double()
    return (counts / counts.sum()).tolist()


def moe_param_count(n_embd: int, hidden: int, n_experts: int, top_k: int,
                    bias: bool = True) -> dict[str, int]:
    """Parameter counts of one MoE FFN layer: "per_expert", "router", "total" (E experts plus
    the router), "active" (what one token uses: k experts and the router), and "dense", the plain FFN
    of width `hidden` it replaces. With hidden divisible by E, total - dense = (2E - 1) d with
    biases (the router and E - 1 more output biases) and E d without."""
    d, e = int(n_embd), int(n_experts)
    h_e = int(hidden) // e
    per_expert = 2 * d * h_e + (h_e + d if bias else 0)
    return {"per_expert": per_expert, "router": d * e, "total": e * per_expert + d * e,
            "active": int(top_k) * per_expert + d * e,
            "dense": 2 * d * int(hidden) + (int(hidden) + d if bias else 0)}


class MoEFFN(nn.Module):
    """Top-k MoE FFN of `config.n_experts` experts of width hidden // n_experts (module doc).

    `hidden` is the dense FFN's width (nn.gpt.mlp_hidden), passed in so that the two modules do
    not import each other."""

    def __init__(self, config, hidden: int):
        super().__init__()
        d, e = config.n_embd, config.n_experts
        self.n_experts, self.top_k, self.router_kind = e, config.top_k, config.router
        self.expert_hidden = h_e = hidden // e
        self.router = nn.Linear(d, e, bias=False)
        self.c_fc = nn.Linear(d, e * h_e, bias=config.bias)  # expert i: rows i*h_e .. (i+1)*h_e
        self.act = activations.get(config.act)
        self.c_proj = nn.Linear(e * h_e, d, bias=False)
        # expert i's output bias; a dense c_proj bias would be added whatever the gates say
        self.expert_bias = nn.Parameter(torch.zeros(e, d)) if config.bias else None
        self.dropout = nn.Dropout(config.dropout)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """(..., E) gate weights for the tokens x (..., d), 0 for the unchosen experts."""
        return dense_gates(self.router(x), self.top_k, self.router_kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gates(x)  # (..., E)
        h = self.act(self.c_fc(x))  # (..., E * h_e): every expert's hidden layer
        h = (h.unflatten(-1, (self.n_experts, self.expert_hidden)) * g.unsqueeze(-1)).flatten(-2)
        y = self.c_proj(h)  # sum over experts of g_i * act(x W_i + b_i) P_i
        if self.expert_bias is not None:
            y = y + g @ self.expert_bias
        return self.dropout(y)

    def expert(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Expert i alone, act(x W_i + b_i) P_i + c_i, from its slices of the shared Linears."""
        rows = slice(i * self.expert_hidden, (i + 1) * self.expert_hidden)
        b = self.c_fc.bias[rows] if self.c_fc.bias is not None else None
        h = self.act(nn.functional.linear(x, self.c_fc.weight[rows], b))
        y = nn.functional.linear(h, self.c_proj.weight[:, rows])
        return y + self.expert_bias[i] if self.expert_bias is not None else y

"""One run of study C5 (gates): a small GPT with sigmoid in one role (FFN gate, attention,
attention output gate, MoE router), and the probe that reads its attention row sums, gate values
and expert loads.
Module level so that run_grid can hand `train_variant` to worker processes.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from actlab.studies.common import gpt_data, job_data


def _outputs(model, modules, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """{i: output of modules[i]} from one forward pass of `model` on `x`, in eval mode and
    without gradients; the hooks are removed and the mode restored whatever happens."""
    seen: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, i=i: seen.__setitem__(i, out))
             for i, m in enumerate(modules)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x.to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return seen


def measure_attention(model, x: torch.Tensor) -> dict:
    """Mean attention-row sum per query position (sigmoid attention) and mean output-gate value
    (softmax_gated) of `model` on the batch `x`, averaged over batch, heads and layers.

    The row sums come from the model's own `sigmoid_attention` applied to V = 1, so they are
    exactly what the model computes. Softmax rows sum to 1 and return nothing here.
    """
    from actlab.nn.gpt import sigmoid_attention

    kind = model.config.attention
    if kind not in ("sigmoid", "sigmoid_nobias", "softmax_gated"):
        return {}
    blocks = list(model.transformer.h)
    seen = _outputs(model, [b.attn.c_gate if kind == "softmax_gated" else b.attn.c_attn
                            for b in blocks], x)
    if kind == "softmax_gated":
        by_layer = [float(torch.sigmoid(seen[i]).mean()) for i in range(len(blocks))]
        return {"gate_mean": float(np.mean(by_layer)), "gate_by_layer": by_layer}
    rows = []
    for i, block in enumerate(blocks):
        B, T, C3 = seen[i].shape
        C, nh = C3 // 3, block.attn.n_head
        q, k, _ = seen[i].split(C, dim=2)
        q = q.view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, C // nh).transpose(1, 2)
        ones = torch.ones(B, nh, T, 1, dtype=q.dtype, device=q.device)
        with torch.no_grad():
            sums = sigmoid_attention(q, k, ones, bias=kind == "sigmoid")  # (B, nh, T, 1)
        rows.append(sums.mean(dim=(0, 1)).squeeze(-1).cpu())  # (T,)
    by_layer = torch.stack(rows)  # (n_layer, T)
    return {"row_sum_by_pos": by_layer.mean(0).tolist(),
            "row_sum_by_layer": by_layer.mean(1).tolist(),
            "row_sum_mean": float(by_layer.mean())}


def measure_moe(model, x: torch.Tensor) -> dict:
    """Expert load of a MoE model on the batch `x`: the fraction of token-to-expert assignments
    per expert (nn.moe.expert_load), per layer and averaged over layers; {} for a dense FFN.
    Read from the routers' own logits through forward hooks, in eval mode."""
    from actlab.nn.moe import expert_load

    if getattr(model.config, "ffn", "dense") != "moe":
        return {}
    blocks = list(model.transformer.h)
    seen = _outputs(model, [b.mlp.router for b in blocks], x)
    cfg = model.config
    by_layer = [expert_load(seen[i], cfg.top_k, cfg.router) for i in range(len(blocks))]
    return {"expert_load": np.mean(by_layer, axis=0).tolist(), "expert_load_by_layer": by_layer}


class _AttentionProbe:
    """Trainer callback: measure_attention and measure_moe at initialisation (step 0, before the
    update) and after the last update. No randomness is drawn, so the run is the same with or
    without it."""

    def __init__(self, x: torch.Tensor, last_step: int):
        self.x, self.last_step = x, last_step
        self.init: dict = {}
        self.final: dict = {}

    def after_backward(self, step: int, model) -> None:
        if step == 0:
            self.init = {**measure_attention(model, self.x), **measure_moe(model, self.x)}

    def after_step(self, step: int, model) -> None:
        if step == self.last_step:
            self.final = {**measure_attention(model, self.x), **measure_moe(model, self.x)}


def train_variant(params: dict) -> dict:
    """Train one (variant, lr, seed) GPT on the bundled corpus; return losses, the parameter
    count and the probe (sigmoid attention, the output gate, MoE expert loads). JSON-able."""
    from actlab.config import ModelConfig, TrainConfig
    from actlab.data import eval_batches
    from actlab.training.loop import train

    cpu0 = time.process_time()
    size = params["size"]
    model = ModelConfig(n_layer=size["n_layer"], n_head=size["n_head"], n_embd=size["n_embd"],
                        block_size=size["block_size"], act=params["act"],
                        attention=params["attention"], mlp_ratio=params["mlp_ratio"],
                        **{k: params[k] for k in ("ffn", "router", "n_experts", "top_k") if k in params})
    cfg = TrainConfig(model=model, seed=params["seed"], steps=size["steps"],
                      batch_size=size["batch_size"], lr=params["lr"],
                      warmup_steps=size["warmup_steps"], eval_every=size["eval_every"],
                      eval_batches=size["eval_batches"])
    data = gpt_data(size["block_size"], *job_data(params))
    x, _ = eval_batches(data.val_ids, size["block_size"], size["batch_size"], 1)[0]
    probe = _AttentionProbe(x, size["steps"] - 1)
    run = train(cfg, data=data, callbacks=(probe,), progress=False)
    history = [{k: r[k] for k in ("step", "train_loss", "val_loss") if k in r} for r in run.history]
    done = run.outcome == "completed"
    return {"outcome": run.outcome, "final_loss": run.val_loss if done else None,
            "best_val_loss": run.best_val_loss, "n_params": run.n_params, "steps": run.steps,
            "tokens_per_s": run.tokens_per_s, "cpu_seconds": time.process_time() - cpu0,
            "probe_init": probe.init, "probe_final": probe.final, "history": history}

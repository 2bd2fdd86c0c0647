"""How big a configured run is, in whole-number arithmetic that works for any size: the GPT's
parameter count and a lower bound on the memory a training run needs. actlab.config checks
every config against these before anything is built or allocated."""

from __future__ import annotations

from fractions import Fraction

FLOAT_BYTES = 4  # models train in float32 (bfloat16 autocast keeps float32 weights)


def sci(n: int | float) -> str:
    """A count of any size as 4.8e+25 (or 10**N past float range: sizes can be huge ints)."""
    n = int(n)
    return f"{float(n):.2g}" if n.bit_length() < 1000 else f"10**{int(n.bit_length() * 0.30103)}"


def parameter_count(model, vocab_size: int) -> int:
    """Parameters of the GPT (nn.gpt), in whole-number arithmetic so that any size works:
    token and position embeddings (the head is tied), then per layer attention (4 d^2) and
    the MLP (2 d h, h = mlp_ratio * d; a gated MLP's three matrices of 2h/3 come to the same)."""
    d, hidden = int(model.n_embd), _hidden(model)
    per_layer = 4 * d * d + 2 * d * hidden + 9 * d + hidden
    if getattr(model, "ffn", "dense") == "moe":  # a router (d x E) and one output bias per expert
        per_layer += (2 * int(model.n_experts) - 1) * d
    return (int(vocab_size) + int(model.block_size)) * d + int(model.n_layer) * per_layer


def _hidden(model) -> int:
    return int(Fraction(model.mlp_ratio) * int(model.n_embd))


def memory_estimate(cfg) -> tuple[int, dict[str, tuple[int, str]]]:
    """(bytes a training run needs at least, {part: (bytes, the fields that set it)}). A lower
    bound, so that only what cannot run is refused: float32 weights and gradients, plus AdamW's
    two moments or SGD's momentum; what one batch keeps for the backward pass (per token and
    layer 10 d + 2 h floats, plus each head's attention weights where sigmoid attention stores
    them; 2 floats per vocabulary entry for the logits); the validation batches (int64)."""
    m = cfg.model
    vocab = max(int(m.vocab_size), int(cfg.bpe_vocab)) if cfg.tokenizer == "bpe" else int(m.vocab_size)
    d, layers, heads, block = int(m.n_embd), int(m.n_layer), int(m.n_head), int(m.block_size)
    tokens = int(cfg.batch_size) * block
    params = parameter_count(m, vocab)
    states = 2 if cfg.optimizer == "adamw" else int(cfg.momentum > 0)
    attention = heads * block if m.attention.startswith("sigmoid") else 0
    per_token = layers * (10 * d + 2 * _hidden(m) + attention) + 2 * vocab
    parts = {
        "weights, gradients and optimizer state": (
            FLOAT_BYTES * (2 + states) * params, f"{sci(params)} parameters from {m.size_fields()}"),
        "one batch's activations": (
            FLOAT_BYTES * tokens * per_token,
            f"batch_size={cfg.batch_size}, block_size={block}, n_embd={d}, n_layer={layers}, "
            f"n_head={heads}, vocab_size={vocab}"),
        "the validation batches": (
            3 * 8 * int(cfg.eval_batches) * tokens,
            f"eval_batches={cfg.eval_batches}, batch_size={cfg.batch_size}, block_size={block}"),
    }
    return sum(v[0] for v in parts.values()), parts

"""Autoregressive sampling from a GPT, and text from a run folder.

The next token's distribution is softmax(s / T) over the vocabulary, where s are the model's
scores for the last position: the logits for a softmax head, and log sigmoid(logits) for a
`head == "sigmoid"` model, whose V independent sigmoids do not sum to 1; at T = 1 that is the
sigmoid scores divided by their sum, the only distribution such a head gives without a
normaliser of its own. Temperature 0 takes the argmax (greedy decoding; the first of tied
scores), top_k keeps the k best scores (and any tied with the k-th). Draws come from the
torch.Generator passed in, never from torch's global generator, so the same seed gives the
same tokens and nothing else a program draws is disturbed.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from actlab.errors import ActlabError
from actlab.nn.gpt import GPT
from actlab.runs.load import LoadedRun, load_run

MAX_SEED = 2**64 - 1  # what torch.Generator.manual_seed takes


def next_token_scores(model: GPT, logits: torch.Tensor) -> torch.Tensor:
    """The log-scores s whose softmax is the next-token distribution (float32)."""
    logits = logits.float()
    return F.logsigmoid(logits) if model.config.head == "sigmoid" else logits


def pick(scores: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``scores`` (B, V): the argmax at temperature 0, else a draw from
    softmax(scores / temperature) over the top_k best (all when top_k is None). Returns (B, 1)."""
    if temperature == 0:
        return scores.argmax(dim=-1, keepdim=True)
    if top_k is not None and top_k < scores.size(-1):
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    # Shifted first, so that a tiny temperature sends the others to -inf, not inf - inf.
    shifted = scores - scores.max(dim=-1, keepdim=True).values
    probs = torch.softmax(shifted / temperature, dim=-1)
    where = generator.device if generator is not None else probs.device
    draw = torch.multinomial(probs.to(where), 1, generator=generator)
    return draw.to(scores.device)


@torch.no_grad()
def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``idx`` (B, T) of token ids followed by ``max_new_tokens`` sampled ones: (B, T + new).

    Each step sees the last block_size tokens at most. The model is called as it is (put it
    in eval mode: dropout would otherwise make every step random). A generator on another
    device than the model's (a CPU one for a CUDA model) draws there, the probabilities moved
    to it; without one, the draws come from torch's global generator of the model's device.
    """
    _check(temperature, top_k, max_new_tokens)
    if idx.dim() != 2 or idx.size(1) < 1:
        raise ActlabError(f"generate needs token ids of shape (batch, time >= 1), got {tuple(idx.shape)}")
    block = model.config.block_size
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -block:])
        scores = next_token_scores(model, logits[:, -1, :])
        idx = torch.cat([idx, pick(scores, temperature, top_k, generator)], dim=1)
    return idx


def sample(run: LoadedRun | str | os.PathLike, prompt: str = "", tokens: int = 200,
           temperature: float = 0.8, seed: int = 0, top_k: int | None = None) -> str:
    """The text a run generates after ``prompt`` (the continuation only, prompt not included).

    A run folder's path is loaded on the CPU first. An empty prompt starts from a newline
    token when the vocabulary has one ("\\n" encodes to one id that decodes back to "\\n"),
    else from id 0; that start is not part of the text returned. The draws come from a CPU
    torch.Generator seeded with ``seed``: the same run, prompt, seed and settings give the
    same text, call after call.
    """
    run = run if isinstance(run, LoadedRun) else load_run(run)
    _check(temperature, top_k, tokens)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ActlabError(f"seed must be a whole number between 0 and {MAX_SEED}, got {seed!r}")
    tok, model = run.tokenizer, run.model
    start = tok.encode(prompt) if prompt else _start_ids(tok)
    if not start:  # a prompt the tokenizer turns into no ids at all
        start = _start_ids(tok)
    device = next(model.parameters()).device
    idx = torch.tensor([start], dtype=torch.long, device=device)
    generator = torch.Generator().manual_seed(seed)
    out = generate(model, idx, tokens, temperature=temperature, top_k=top_k,
                   generator=generator)[0].tolist()
    if not prompt:
        return tok.decode(out[len(start):])
    # Decoded together, so that a character whose bytes straddle the prompt's end comes out whole.
    whole, head = tok.decode(out), tok.decode(start)
    return whole[len(head):] if whole.startswith(head) else tok.decode(out[len(start):])


def _start_ids(tok) -> list[int]:
    ids = tok.encode("\n")
    return ids if len(ids) == 1 and tok.decode(ids) == "\n" else [0]


def _check(temperature: float, top_k: int | None, count: int) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and temperature >= 0):
        raise ActlabError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ActlabError(f"top_k must be a whole number >= 1, got {top_k!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ActlabError(f"the number of tokens must be a whole number >= 0, got {count!r}")

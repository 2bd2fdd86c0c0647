"""What a table of counts knows: the validation cross-entropy of unigram, bigram and trigram
count models fitted on the training split, the bar a transformer must clear before a comparison
of its activations says anything about transformers.

Smoothing: interpolated Kneser-Ney (Kneser & Ney 1995; the interpolated form of Chen & Goodman
1998, "An Empirical Study of Smoothing Techniques for Language Modeling", eq. 17), one discount
per order, D = n1 / (n1 + 2 n2) (Ney, Essen & Kneser 1994), n_k the number of n-grams seen
exactly k times at that order. For a history h and next token w:

    P_n(w | h) = max(c(h w) - D, 0) / c(h)  +  D * N1+(h .) / c(h) * P_{n-1}(w | h')

with h' the history shortened by one token, c(h) = sum over w of c(h w), N1+(h .) the number of
distinct tokens seen after h, and P_{n-1} used alone where h was never seen. The top order counts
occurrences; the lower orders inside it count continuations, c(h' w) = N1+(. h' w), the number
of distinct tokens seen before h' w (Kneser-Ney's correction: a token that follows few different
contexts gets little weight as a back-off). The unigram level interpolates with the uniform
distribution over the vocabulary, so every token has a probability above zero. The unigram
baseline is that level with plain counts (absolute discounting).

Counts are sparse (np.unique over n-grams packed into int64 keys), so BPE vocabularies of many
thousand tokens cost what the corpus costs, not V^3. Every order is scored on the same tokens:
validation positions 2 onwards, with histories taken from the validation split itself.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from actlab.data.cache import cache_root
from actlab.files.atomic import write_json

ORDERS = ("unigram", "bigram", "trigram")
SMOOTHING = "interpolated Kneser-Ney, D = n1 / (n1 + 2 n2) per order"
RECIPE = "ikn1"  # bump when the method changes: cached values of another recipe are not reused


def discount(counts: np.ndarray) -> float:
    """Ney's estimate n1 / (n1 + 2 n2) from the counts of one order (0.5 when n1 = n2 = 0)."""
    n1, n2 = int(np.sum(counts == 1)), int(np.sum(counts == 2))
    return n1 / (n1 + 2 * n2) if n1 + n2 else 0.5


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[i] where keys[i] == query (keys sorted and unique), 0 where the key is absent."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=np.float64)
    idx = np.clip(np.searchsorted(keys, query), 0, len(keys) - 1)
    return np.where(keys[idx] == query, values[idx], 0).astype(np.float64)


class _Level:
    """One order's counts c(h w), keyed h * V + w, with each history's total c(h) and type
    count N1+(h .), and the order's discount."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray, vocab: int):
        self.keys, self.counts, self.vocab = keys, counts.astype(np.float64), vocab
        self.d = discount(counts)
        hist = keys // vocab
        self.hist, first = np.unique(hist, return_index=True)
        self.total = np.add.reduceat(self.counts, first) if len(first) else np.zeros(0)
        self.types = np.diff(np.append(first, len(keys))).astype(np.float64)

    def prob(self, hist: np.ndarray, w: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """P(w | hist) interpolated with `lower`, the next order's P(w | shorter history)."""
        c = _lookup(self.keys, self.counts, hist * self.vocab + w)
        total = _lookup(self.hist, self.total, hist)
        types = _lookup(self.hist, self.types, hist)
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        p = np.maximum(c - self.d, 0.0) / safe + self.d * types / safe * lower
        return np.where(seen, p, lower)


def _unigram(counts: np.ndarray, w: np.ndarray, vocab: int) -> np.ndarray:
    """Absolute discounting of per-token counts, interpolated with the uniform 1 / V."""
    counts = counts.astype(np.float64)
    total, d = counts.sum(), discount(counts[counts > 0])
    if total == 0:
        return np.full(len(w), 1.0 / vocab)
    return np.maximum(counts[w] - d, 0.0) / total + d * np.count_nonzero(counts) / total / vocab


def ngram_baselines(train_ids, val_ids, vocab_size: int) -> dict:
    """{"unigram", "bigram", "trigram"}: validation cross-entropy in nats per token, plus the
    method ("smoothing"), the discounts and how many validation tokens were scored."""
    t = np.asarray(train_ids, dtype=np.int64).ravel()
    v = np.asarray(val_ids, dtype=np.int64).ravel()
    V = int(vocab_size)
    if len(t) < 3 or len(v) < 3:
        raise ValueError("n-gram baselines need at least 3 tokens in each split")
    if max(int(t.max()), int(v.max())) >= V or min(int(t.min()), int(v.min())) < 0:
        raise ValueError(f"token ids must lie in [0, {V})")
    if V ** 3 >= 2 ** 63:
        raise ValueError(f"vocabulary of {V} tokens is too large to pack trigrams into int64")

    # Occurrence counts of the top orders, continuation counts for the orders below them.
    tri_keys, tri_counts = np.unique((t[:-2] * V + t[1:-1]) * V + t[2:], return_counts=True)
    bi_keys, bi_counts = np.unique(t[:-1] * V + t[1:], return_counts=True)
    cont_bi_keys, cont_bi = np.unique(tri_keys % (V * V), return_counts=True)  # N1+(. b w)
    cont_uni = np.bincount(bi_keys % V, minlength=V)  # N1+(. w)
    raw_uni = np.bincount(t, minlength=V)

    a, b, w = v[:-2], v[1:-1], v[2:]  # every order scores the same tokens w
    p_cont1 = _unigram(cont_uni, w, V)
    bigram = _Level(bi_keys, bi_counts, V)
    cont_bigram = _Level(cont_bi_keys, cont_bi, V)
    trigram = _Level(tri_keys, tri_counts, V)
    probs = {
        "unigram": _unigram(raw_uni, w, V),
        "bigram": bigram.prob(b, w, p_cont1),
        "trigram": trigram.prob(a * V + b, w, cont_bigram.prob(b, w, p_cont1)),
    }
    out = {name: float(-np.mean(np.log(p))) for name, p in probs.items()}
    out.update(smoothing=SMOOTHING, tokens=int(len(w)),
               discounts={"unigram": discount(raw_uni[raw_uni > 0]), "bigram": bigram.d,
                          "bigram_cont": cont_bigram.d, "trigram": trigram.d})
    return out


def corpus_baselines(data, cache: Path | None = None) -> dict:
    """ngram_baselines of a prepared DataBundle, cached on disk (cache_root()/baselines) by
    corpus hash and tokenizer (the split's token ids are hashed too, so another split or
    vocabulary never hits)."""
    h = hashlib.sha256()
    for ids in (data.train_ids, data.val_ids):
        ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64))
        h.update(len(ids).to_bytes(8, "little") + ids.tobytes())  # the split point counts too
    key = f"{data.text_hash[:16]}-{type(data.tokenizer).__name__}-v{data.vocab_size}-" \
          f"{h.hexdigest()[:16]}-{RECIPE}"
    path = (cache or cache_root() / "baselines") / f"{key}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    result = {**ngram_baselines(data.train_ids, data.val_ids, data.vocab_size),
              "corpus": data.name, "corpus_hash": data.text_hash}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, result)  # atomic: concurrent callers never read half a file
    except OSError:
        pass  # a full or read-only cache costs the next caller the seconds it takes, nothing else
    return result

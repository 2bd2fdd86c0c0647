"""One call from a corpus path to train/validation token tensors."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from actlab.data.baselines import corpus_baselines
from actlab.data.batching import check_length
from actlab.data.corpus import corpus_hash, load_corpus
from actlab.data.tokenizer import KINDS, Tokenizer, build_tokenizer, encode_array
from actlab.data.tokenizer_files import load_tokenizer_file
from actlab.errors import ActlabError


@dataclass
class DataBundle:
    name: str               # corpus name: "shakespeare", a file name or a folder name
    text_hash: str          # corpus_hash of the whole text (before the split)
    chars: int              # characters of the whole text
    tokenizer: Tokenizer
    train_ids: torch.Tensor  # int64, 1-D
    val_ids: torch.Tensor    # int64, 1-D
    vocab_size: int         # tokenizer.vocab_size
    _baselines: dict | None = field(default=None, repr=False, compare=False)

    def baselines(self) -> dict:
        """The n-gram baselines of this split and tokenizer (data/baselines.py), computed once
        per corpus and cached on disk; {"unigram", "bigram", "trigram", ...} in nats/token."""
        if self._baselines is None:
            self._baselines = corpus_baselines(self)
        return self._baselines


def prepare(path: str | os.PathLike | None, tokenizer_kind: str, block_size: int,
            vocab_size: int = 1024, val_fraction: float = 0.1,
            cache_dir: str | os.PathLike | None = None) -> DataBundle:
    """Load the corpus, split its text (first ``1 - val_fraction`` of the characters for
    training, the rest for validation), build the tokenizer on the training text only,
    encode both parts and check that each holds at least one context.

    ``tokenizer_kind`` is char, byte, bpe or the path of a Hugging Face tokenizer.json, which
    is loaded as it is (its own vocabulary size; ``vocab_size`` is then unused)."""
    text, name, train_text, val_text, tok = _split_and_tokenizer(
        path, tokenizer_kind, vocab_size, val_fraction, cache_dir)
    train_ids = torch.from_numpy(encode_array(tok, train_text))
    val_ids = torch.from_numpy(encode_array(tok, val_text))
    where = "the bundled corpus" if path is None else str(path)
    check_length(train_ids, block_size, f"{where}: training split")
    check_length(val_ids, block_size, f"{where}: validation split")
    return DataBundle(name=name, text_hash=corpus_hash(text), chars=len(text), tokenizer=tok,
                      train_ids=train_ids, val_ids=val_ids, vocab_size=tok.vocab_size)


def training_tokenizer(path: str | os.PathLike | None, tokenizer_kind: str,
                       vocab_size: int = 1024, val_fraction: float = 0.1,
                       cache_dir: str | os.PathLike | None = None) -> tuple[Tokenizer, str]:
    """(the tokenizer prepare() gives with these arguments, corpus_hash of the text) without
    encoding the corpus: what rebuilds the tokenizer of a run folder that lacks its file."""
    text, _, _, _, tok = _split_and_tokenizer(path, tokenizer_kind, vocab_size, val_fraction,
                                              cache_dir)
    return tok, corpus_hash(text)


def _split_and_tokenizer(path, tokenizer_kind, vocab_size, val_fraction, cache_dir):
    """(text, name, training text, validation text, tokenizer): the one place that splits."""
    given = None if tokenizer_kind in KINDS else load_tokenizer_file(tokenizer_kind)
    if not 0.0 < val_fraction < 1.0:
        raise ActlabError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
    text, name = load_corpus(path)
    cut = int(len(text) * (1.0 - val_fraction))
    train_text, val_text = text[:cut], text[cut:]
    tok = given or build_tokenizer(tokenizer_kind, train_text, vocab_size=vocab_size,
                                   cache_dir=cache_dir)
    return text, name, train_text, val_text, tok

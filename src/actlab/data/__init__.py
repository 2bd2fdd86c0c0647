"""Data: the bundled Shakespeare corpus or the user's text, tokenizers, and batches.

    from actlab.data import prepare, Batcher, eval_batches
    data = prepare(None, "char", block_size=128)          # bundled corpus
    batches = Batcher(data.train_ids, 128, 32, seed=0)
    x, y = batches.next()
"""
from actlab.data.batching import Batcher, check_length, eval_batches, split_ids
from actlab.data.corpus import BUNDLED_NAME, BUNDLED_PLAYS, BUNDLED_SHA256, corpus_hash, load_corpus
from actlab.data.prepare import DataBundle, prepare
from actlab.data.tokenizer import (
    KINDS,
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    build_tokenizer,
    default_cache_dir,
    encode_array,
)

__all__ = [
    "BUNDLED_NAME",
    "BUNDLED_PLAYS",
    "BUNDLED_SHA256",
    "KINDS",
    "BPETokenizer",
    "Batcher",
    "ByteTokenizer",
    "CharTokenizer",
    "DataBundle",
    "Tokenizer",
    "build_tokenizer",
    "check_length",
    "corpus_hash",
    "default_cache_dir",
    "encode_array",
    "eval_batches",
    "load_corpus",
    "prepare",
    "split_ids",
]

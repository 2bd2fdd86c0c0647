"""Tokenizer files: a user's Hugging Face ``tokenizer.json`` (``--tokenizer PATH``), and the
copy of its tokenizer a run folder keeps, so that the folder alone rebuilds the model's text
interface: BPE and file tokenizers as Hugging Face's own ``tokenizer.json``, char and byte as a
small strict-JSON ``vocab.json``.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from actlab.data.tokenizer import (
    KINDS, BPETokenizer, ByteTokenizer, CharTokenizer, FileTokenizer, Tokenizer, _cuttable,
)
from actlab.errors import ActlabError
from actlab.files.atomic import write_json, write_text
from actlab.files.schema import SCHEMA_VERSION

HF_FILE = "tokenizer.json"  # bpe and file tokenizers: Hugging Face's format, as it is
VOCAB_FILE = "vocab.json"  # char and byte tokenizers: {"schema_version": 1, "kind": ...}
TOKENIZER_FILES = (HF_FILE, VOCAB_FILE)
VOCAB_SCHEMA = SCHEMA_VERSION  # the one version of every JSON file actlab writes (files/schema.py)


def check_tokenizer(value: object) -> None:
    """One-line ActlabError unless ``value`` is a kind (char, byte, bpe) or the path of a file
    that Hugging Face ``tokenizers`` loads. A kind wins over a file of the same name."""
    if value not in KINDS:
        _file_vocab_size(*_file_key(value))


def load_tokenizer_file(path: str | os.PathLike) -> FileTokenizer:
    """The Hugging Face tokenizer.json at ``path`` (one-line ActlabError if it is missing or
    not a tokenizer)."""
    key = _file_key(path)
    _file_vocab_size(*key)
    return FileTokenizer(_read_hf(key[0]), source=Path(key[0]))


def _file_key(value: object) -> tuple[str, int, int]:
    """(absolute path, mtime in ns, size): what identifies a file's contents for the cache."""
    valid = f"valid kinds: {', '.join(KINDS)}, or the path of a Hugging Face tokenizer.json"
    if not isinstance(value, (str, os.PathLike)) or not str(value) or "\x00" in str(value):
        raise ActlabError(f"unknown tokenizer {value!r}; {valid}")
    path = os.path.abspath(os.path.expanduser(value))
    try:
        st = os.stat(path)
    except OSError as err:
        reason = (err.strerror or "cannot read it").lower()
        raise ActlabError(f"unknown tokenizer {str(value)!r} ({reason}); {valid}") from None
    if not os.path.isfile(path):
        raise ActlabError(f"unknown tokenizer {str(value)!r} (not a file); {valid}")
    return path, st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=16)
def _file_vocab_size(path: str, mtime_ns: int, size: int) -> int:
    """Loads the file once per version of it: configs are validated many times per run."""
    vocab = _read_hf(path).get_vocab_size()
    if vocab < 1:
        raise ActlabError(f"tokenizer file {path} has an empty vocabulary")
    return vocab


def _read_hf(path: str):
    from tokenizers import Tokenizer as HFTokenizer

    try:
        return HFTokenizer.from_file(path)
    except Exception as err:  # tokenizers raises plain Exceptions carrying serde's message
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = f": {lines[0][:200]}" if lines else ""
        raise ActlabError(f"tokenizer file {path} cannot be read as a Hugging Face "
                          f"tokenizer.json{detail}") from None


def save_tokenizer(tok: Tokenizer, folder: str | os.PathLike) -> Path:
    """Write ``tok`` into ``folder`` (atomically) as tokenizer.json or vocab.json, after
    removing any tokenizer file already there, so a folder never holds two. Returns the path."""
    folder = Path(folder)
    if isinstance(tok, CharTokenizer):
        name, body = VOCAB_FILE, {"schema_version": VOCAB_SCHEMA, "kind": "char", "chars": tok.chars}
    elif isinstance(tok, ByteTokenizer):
        name, body = VOCAB_FILE, {"schema_version": VOCAB_SCHEMA, "kind": "byte"}
    elif hasattr(getattr(tok, "hf", None), "to_str"):
        name, body = HF_FILE, None
    else:
        raise ActlabError(f"cannot save a tokenizer of type {type(tok).__name__}: only char, byte "
                          "and Hugging Face tokenizers have a file format")
    for old in TOKENIZER_FILES:
        (folder / old).unlink(missing_ok=True)
    if body is None:
        return write_text(folder / name, tok.hf.to_str())
    return write_json(folder / name, body)


def tokenizer_path(folder: str | os.PathLike) -> Path | None:
    """The tokenizer file in ``folder`` (tokenizer.json or vocab.json), or None."""
    found = [Path(folder) / name for name in TOKENIZER_FILES if (Path(folder) / name).is_file()]
    if len(found) > 1:
        raise ActlabError(f"{folder} holds both {HF_FILE} and {VOCAB_FILE}: keep the one its "
                          "config.json's tokenizer names")
    return found[0] if found else None


def load_tokenizer(folder: str | os.PathLike, kind: str | None = None) -> Tokenizer:
    """The tokenizer save_tokenizer wrote into ``folder``: encode and decode equal the saved
    one's on every text. ``kind`` ("char", "byte", "bpe" or "file"), when given, must match
    the file; a tokenizer.json without it is "bpe" when it is the kind train_bpe makes (a
    byte-level BPE without special tokens), else "file". One-line ActlabError otherwise."""
    path = tokenizer_path(folder)
    if path is None:
        raise ActlabError(f"{folder} holds no tokenizer file ({HF_FILE} or {VOCAB_FILE})")
    if path.name == HF_FILE:
        hf = _read_hf(str(path))
        found = kind or ("bpe" if _is_trained_bpe(hf) else "file")
        tok = BPETokenizer(hf) if found == "bpe" else FileTokenizer(hf, source=path)
    else:
        tok = _read_vocab(path)
    if kind is not None and tok.kind != kind:
        raise ActlabError(f"{path} holds a {tok.kind} tokenizer, not the {kind} one asked for")
    return tok


def _is_trained_bpe(hf) -> bool:
    spec = json.loads(hf.to_str())
    return ((spec.get("model") or {}).get("type") == "BPE" and not spec.get("added_tokens")
            and spec.get("post_processor") is None and _cuttable(hf))


def _read_vocab(path: Path) -> Tokenizer:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ActlabError(f"{path} cannot be read as JSON: {err}") from None
    bad = f"{path} is not a tokenizer vocabulary written by actlab"
    if not isinstance(raw, dict) or raw.get("schema_version") not in range(1, VOCAB_SCHEMA + 1):
        raise ActlabError(f"{bad} (schema_version 1 to {VOCAB_SCHEMA} expected)")
    if raw.get("kind") == "byte":
        return ByteTokenizer()
    chars = raw.get("chars")
    if raw.get("kind") != "char" or not isinstance(chars, list):
        raise ActlabError(f"{bad} (kind 'char' with a list of chars, or 'byte', expected)")
    if not all(isinstance(c, str) and len(c) == 1 for c in chars) or chars != sorted(set(chars)):
        # the ids are the positions in sorted order: any other list would shift them
        raise ActlabError(f"{bad}: its chars must be distinct single characters in code-point order")
    return CharTokenizer(chars)

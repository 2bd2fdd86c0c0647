"""Tokenizers: ``char`` (characters of the training text), ``byte`` (UTF-8 bytes),
``bpe`` (byte-level BPE trained locally with Hugging Face ``tokenizers``, cached on disk) and
``file`` (a Hugging Face ``tokenizer.json`` the user brings, used as it is).

Every tokenizer has ``kind``, ``vocab_size``, ``encode(str) -> list[int]`` and
``decode(list[int]) -> str``; the ones built here also have ``encode_array(str)``,
which returns a NumPy int64 array without building a Python list (fast on megabytes).

Reading a user's tokenizer file and keeping a tokenizer in a run folder: data/tokenizer_files.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from actlab.data.cache import cache_root
from actlab.data.corpus import corpus_hash
from actlab.errors import ActlabError

KINDS = ("char", "byte", "bpe")
# Bump when the BPE training recipe below changes, so old cache files are not reused.
BPE_RECIPE = "r1"
MIN_BPE_VOCAB = 257


@runtime_checkable
class Tokenizer(Protocol):
    kind: str
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


def encode_array(tok: Tokenizer, text: str) -> np.ndarray:
    """Token ids of ``text`` as an int64 array, using the tokenizer's fast path when it has one."""
    fast = getattr(tok, "encode_array", None)
    if fast is not None:
        return fast(text)
    return np.asarray(tok.encode(text), dtype=np.int64)


def _as_int_array(ids) -> np.ndarray:
    if hasattr(ids, "detach"):  # torch tensor
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids, dtype=np.int64)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    return arr


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class CharTokenizer:
    """One id per distinct character of the text it was built from, in code-point order.

    Id 0 is reserved for characters the tokenizer has not seen (for example a character
    that occurs only in the validation text): ``encode`` maps them to 0 and ``decode``
    turns 0 into U+FFFD (the replacement character).  Ids 1.. are the sorted characters.
    """

    kind = "char"
    UNK_ID = 0
    UNK_CHAR = "\ufffd"

    def __init__(self, chars: Iterable[str]):
        self.chars: list[str] = sorted(set(chars))
        self._cps = np.array([ord(c) for c in self.chars], dtype=np.int64)
        self._table = np.concatenate([[ord(self.UNK_CHAR)], self._cps]).astype("<u4")
        self.vocab_size = len(self.chars) + 1

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        cps = _codepoints(text)
        present = np.flatnonzero(np.bincount(cps)) if cps.size else []
        return cls(chr(c) for c in present)

    def encode_array(self, text: str) -> np.ndarray:
        cps = _codepoints(text)
        if cps.size == 0:
            return np.zeros(0, dtype=np.int64)
        # Look-up table from code point to id, as long as the largest code point involved.
        size = int(max(cps.max(), self._cps.max() if self._cps.size else 0)) + 1
        lut = np.full(size, self.UNK_ID, dtype=np.int64)
        lut[self._cps] = np.arange(1, len(self._cps) + 1)
        return lut[cps]

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Sequence[int]) -> str:
        arr = _as_int_array(ids)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"char token id out of range [0, {self.vocab_size})")
        return self._table[arr].tobytes().decode("utf-32-le", "surrogatepass")

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class ByteTokenizer:
    """The 256 byte values of the UTF-8 encoding; decoding replaces invalid UTF-8 with U+FFFD."""

    kind = "byte"
    vocab_size = 256

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        arr = _as_int_array(ids)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError("byte token id out of range [0, 256)")
        return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=256)"


# A newline followed by a non-space character is a safe place to cut text for the
# byte-level pre-tokenizer: no pre-token crosses it, so encoding the pieces separately
# gives exactly the ids of encoding the whole text.
_SAFE_CUT = re.compile(r"\n(?=\S)")
_CHUNK_CHARS = 1 << 16


def _chunks(text: str, size: int = _CHUNK_CHARS) -> Iterator[str]:
    start, n = 0, len(text)
    while start < n:
        end = start + size
        if end >= n:
            yield text[start:]
            return
        m = _SAFE_CUT.search(text, end)
        if m is None:
            yield text[start:]
            return
        yield text[start:m.end()]
        start = m.end()


class BPETokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenization, no special tokens), lossless round trip.

    Any Hugging Face tokenizer works here: text is encoded without the special tokens a
    post-processor would add (a training stream has no sentence boundaries to mark) and
    decoded with every id kept, special ones included, so that what the model emits is shown.
    """

    kind = "bpe"

    def __init__(self, hf_tokenizer, cache_path: Path | None = None, from_cache: bool = False):
        self.hf = hf_tokenizer
        self.vocab_size: int = hf_tokenizer.get_vocab_size()
        self.cache_path = cache_path
        self.from_cache = from_cache
        self._cuttable = _cuttable(hf_tokenizer)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        """Ids as int64.  Texts of 1 MiB or more are encoded in parallel pieces, and their
        ids are cached next to the tokenizer's JSON file (keyed by the text's hash)."""
        if len(text) <= _CHUNK_CHARS:
            return np.asarray(self.hf.encode(text, add_special_tokens=False).ids, dtype=np.int64)
        ids_path = self._ids_path(text) if len(text) >= _IDS_CACHE_MIN_CHARS else None
        cached = _load_ids(ids_path) if ids_path is not None else None
        if cached is not None:
            return cached
        if self._cuttable:
            encodings = self.hf.encode_batch(list(_chunks(text)), add_special_tokens=False)
            ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int64)
        else:
            ids = np.asarray(self.hf.encode(text, add_special_tokens=False).ids, dtype=np.int64)
        if ids_path is not None:
            _save_ids(ids, ids_path, self.vocab_size)
        return ids

    def _ids_path(self, text: str) -> Path | None:
        """Where the ids of ``text`` are cached: beside the tokenizer's cached JSON file."""
        if self.cache_path is None:
            return None
        return self.cache_path.with_name(f"{self.cache_path.stem}.ids-{corpus_hash(text)[:16]}.npy")

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(_as_int_array(ids).tolist(), skip_special_tokens=False)

    def get_vocab(self) -> dict[str, int]:
        return self.hf.get_vocab()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, cache_path={str(self.cache_path)!r})"


class FileTokenizer(BPETokenizer):
    """A Hugging Face ``tokenizer.json`` given by path (``--tokenizer PATH``): loaded, never
    trained, so a run can share another model's vocabulary. ``source`` is the file it came from."""

    kind = "file"

    def __init__(self, hf_tokenizer, source: Path):
        super().__init__(hf_tokenizer)
        self.source = source
        self._digest: str | None = None

    def _ids_path(self, text: str) -> Path | None:
        """In default_cache_dir(), keyed by the tokenizer's content (not its path), the
        tokenizers version and the text's hash: a long corpus is encoded once per tokenizer."""
        import tokenizers

        if self._digest is None:
            self._digest = hashlib.sha256(self.hf.to_str().encode("utf-8")).hexdigest()[:16]
        folder = default_cache_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None  # no cache: the ids are computed every time
        return folder / (f"file-{self._digest}-tokenizers{tokenizers.__version__}"
                         f".ids-{corpus_hash(text)[:16]}.npy")


def _cuttable(hf_tokenizer) -> bool:
    """Whether _chunks' cut points are safe for this tokenizer: no normaliser and GPT-2's own
    byte-level pre-tokenizer (no prefix space), as train_bpe builds. Any other tokenizer is
    given the whole text at once, which is slower but always exact."""
    spec = json.loads(hf_tokenizer.to_str())
    pre = spec.get("pre_tokenizer") or {}
    return (spec.get("normalizer") is None and pre.get("type") == "ByteLevel"
            and not pre.get("add_prefix_space", True) and pre.get("use_regex", True)
            and not any("\n" in t.get("content", "") for t in spec.get("added_tokens") or []))


_IDS_CACHE_MIN_CHARS = 1 << 20


def _load_ids(path: Path) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        return None
    return arr.astype(np.int64)


def _save_ids(ids: np.ndarray, path: Path, vocab_size: int) -> None:
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    try:
        np.save(tmp, ids.astype(dtype), allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def default_cache_dir() -> Path:
    """``$ACTLAB_CACHE/tokenizers`` if ACTLAB_CACHE is set, else ``~/.cache/actlab/tokenizers``
    (``$XDG_CACHE_HOME/actlab/tokenizers`` when XDG_CACHE_HOME is set)."""
    return cache_root() / "tokenizers"


def bpe_cache_name(text: str, vocab_size: int) -> str:
    import tokenizers

    return f"bpe-{corpus_hash(text)[:16]}-v{vocab_size}-{BPE_RECIPE}-tokenizers{tokenizers.__version__}.json"


def train_bpe(text: str, vocab_size: int):
    """Train a byte-level BPE on ``text``; returns a ``tokenizers.Tokenizer``. Deterministic."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(_chunks(text), trainer=trainer)
    return tok


def _write_atomic(hf_tok, path: Path) -> bool:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        hf_tok.save(str(tmp))
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        return False


def _build_bpe(text: str, vocab_size: int, cache_dir: str | os.PathLike | None) -> BPETokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    if vocab_size < MIN_BPE_VOCAB:
        raise ActlabError(f"bpe vocab_size must be at least {MIN_BPE_VOCAB} (256 bytes + merges), got {vocab_size}")
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / bpe_cache_name(text, vocab_size)
    if path.is_file():
        try:
            return BPETokenizer(HFTokenizer.from_file(str(path)), cache_path=path, from_cache=True)
        except Exception:  # unreadable or truncated cache file: train again and overwrite it
            pass
    hf_tok = train_bpe(text, vocab_size)
    saved = _write_atomic(hf_tok, path)
    return BPETokenizer(hf_tok, cache_path=path if saved else None, from_cache=False)


def build_tokenizer(kind: str, text: str, vocab_size: int = 1024,
                    cache_dir: str | os.PathLike | None = None) -> Tokenizer:
    """Build a tokenizer of ``kind`` ('char', 'byte' or 'bpe') for ``text``.

    ``vocab_size`` is used by 'bpe' only (the trained vocabulary can be smaller on a small
    text; the tokenizer's ``vocab_size`` is the real size).  BPE tokenizers are cached as
    JSON in ``cache_dir`` (default: :func:`default_cache_dir`), keyed by the text's hash,
    the vocabulary size and the ``tokenizers`` version; a second call loads the file.
    """
    if kind not in KINDS:
        raise ActlabError(f"unknown tokenizer {kind!r}; valid kinds: {', '.join(KINDS)}")
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "byte":
        return ByteTokenizer()
    return _build_bpe(text, int(vocab_size), cache_dir)

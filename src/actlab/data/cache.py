"""Where actlab keeps what it computes once per corpus (BPE tokenizers, token ids, n-gram
baselines): ``$ACTLAB_CACHE`` if set, else ``$XDG_CACHE_HOME/actlab`` or ``~/.cache/actlab``."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("ACTLAB_CACHE")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "actlab"

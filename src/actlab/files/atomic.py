"""Write files so that a kill or a full disk leaves the previous file or none, never half of one.

Every writer puts the bytes under a temporary name in the target's own folder (a rename
across file systems is not atomic) and renames it over the target only once they are all
written; on any failure the temporary file is removed and the error goes on up. JSON is
strict: NaN and infinities become null (analysis.numbers.json_safe), so every reader,
not only Python's, can parse what actlab writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePath

from actlab.analysis.numbers import json_safe


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; write it (savefig, save_file, ...) inside the
    block. On a clean exit it is renamed to `path`; on an exception it is removed. A target
    that exists and is not a regular file is yielded itself."""
    path = Path(path)
    if path.exists() and not path.is_file():
        # A device or a pipe (/dev/null, /dev/stdout, a FIFO): written in place, since a
        # rename would replace the device node itself with a regular file.
        yield path
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp makes the file private (0600); the result gets the mode open() would give it.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if tmp != Path(path):  # a device or a pipe cannot be synced
                os.fsync(f.fileno())
    return Path(path)


def write_text(path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def dumps(obj, indent: int | None = 2, sort_keys: bool = False, default=None) -> str:
    """Strict JSON text of `obj`: non-finite floats as null, keys as strings, numpy scalars
    as their numbers and paths as their text. `default(value)` turns anything else into what
    JSON holds (str: its text); without it such a value raises TypeError."""
    def plain(value):
        if isinstance(value, PurePath):
            return str(value)
        if hasattr(value, "dtype") and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
            return json_safe(value.item())  # a numpy scalar: its number, NaN as null too
        if default is None:
            raise TypeError(f"{type(value).__name__} is not JSON serializable")
        return json_safe(default(value))

    return json.dumps(json_safe(obj), indent=indent, sort_keys=sort_keys, allow_nan=False,
                      default=plain)


def write_json(path, obj, indent: int | None = 2, sort_keys: bool = False, default=None) -> Path:
    """Write `obj` as strict JSON (and a final newline) to `path` atomically (see dumps)."""
    return write_text(path, dumps(obj, indent, sort_keys, default) + "\n")

"""files.atomic: a failed write leaves the previous file (or none) and no temporary file."""

import errno
import json
import math

import pytest

from actlab.files import atomic


def test_write_json_is_strict_and_replaces_the_file(tmp_path):
    path = tmp_path / "a.json"
    atomic.write_json(path, {"x": 1})
    atomic.write_json(path, {"loss": math.nan, "inf": -math.inf, 3: [1.5, math.inf]})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": None, "inf": None, "3": [1.5, None]}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failure_while_writing_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    atomic.write_text(path, "old")

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError) as err:
        atomic.write_text(path, "new")
    assert err.value.errno == errno.ENOSPC
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_path_removes_its_temporary_on_an_exception(tmp_path):
    path = tmp_path / "fig.png"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic.atomic_path(path) as tmp:
        tmp.write_bytes(b"whole")
    assert path.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_written_files_get_the_mode_open_would_give(tmp_path):
    import os
    old = os.umask(0o022)
    try:
        path = atomic.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_device_is_written_in_place_never_replaced(tmp_path):
    import os
    import stat
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # /dev/null stays a character device after a write through it
    atomic.write_json("/dev/null", {"x": 1})
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with atomic.atomic_path(fifo) as target:
        assert target == fifo
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)

"""The CLI's error boundary (actlab.cli.main): the machine's failures (a full disk, a read-only
file system, a results store the disk let down, no memory) are one line with exit 1 that says
what was kept and how to resume; a closed or full standard output costs no traceback; a bug
says it is one; --debug and ACTLAB_DEBUG=1 show the traceback, and nothing else does."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from actlab.cli import describe, main
from actlab.errors import ActlabError, EnvironmentFailure

TEXT = "To be, or not to be, that is the question. " * 40
TINY = ["--steps", "3", "--eval-every", "3", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
        "--block-size", "8", "--batch-size", "2", "--quiet"]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch, tmp_path):
    monkeypatch.delenv("ACTLAB_DEBUG", raising=False)
    monkeypatch.setenv("ACTLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def text(tmp_path) -> str:
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    return str(path)


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def fail_during_training(monkeypatch, errnum: int, filename: str | None):
    """train() as the CLI calls it, with a write failing with `errnum` after the second step:
    config.json, env.json and the first metrics are on disk by then, as on a real full disk."""
    from actlab.training import loop

    real = loop.train

    class Failing:
        def after_step(self, step, model):
            if step == 1:
                raise OSError(errnum, os.strerror(errnum), *([filename] if filename else []))

    def train(cfg, out_dir=None, callbacks=(), **kw):
        return real(cfg, out_dir, callbacks=(*callbacks, Failing()), **kw)

    monkeypatch.setattr(loop, "train", train)


# -- the machine fails -----------------------------------------------------------------------

def test_disk_full_during_train_says_what_was_kept(monkeypatch, capsys, tmp_path, text):
    out = tmp_path / "run"
    target = str(out / "metrics.jsonl")
    fail_during_training(monkeypatch, errno.ENOSPC, target)
    code, stdout, err = run_cli(capsys, "train", "--data", text, *TINY, "--out", str(out))
    line = one_line(err)
    assert code == 1
    assert line == (f"actlab train: error: no space left on device ({target}); what the run wrote "
                    f"so far is kept in {out}; actlab train --resume {out} continues from its "
                    "last evaluation, --overwrite trains it afresh")
    assert (out / "config.json").is_file()  # what the line says was kept is there
    assert stdout == ""


def test_disk_full_without_a_file_name_names_the_run_folder(monkeypatch, capsys, tmp_path, text):
    out = tmp_path / "run"
    fail_during_training(monkeypatch, errno.ENOSPC, None)
    code, _, err = run_cli(capsys, "train", "--data", text, *TINY, "--out", str(out))
    assert code == 1
    assert f"no space left on device (in {out}); what the run wrote so far is kept in {out}" in one_line(err)


def test_read_only_file_system_during_train(monkeypatch, capsys, tmp_path, text):
    out = tmp_path / "run"
    fail_during_training(monkeypatch, errno.EROFS, str(out / "model.safetensors"))
    code, _, err = run_cli(capsys, "train", "--data", text, *TINY, "--out", str(out))
    assert code == 1
    assert f"read-only file system ({out / 'model.safetensors'})" in one_line(err)


def test_read_only_out_folder_is_refused_before_training(monkeypatch, capsys, tmp_path, text):
    """EROFS where the probe creates the run folder: one line, exit 1, nothing run or made."""
    def read_only(*_a, dir=None, **_k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    out = tmp_path / "new" / "run"
    code, _, err = run_cli(capsys, "train", "--data", text, *TINY, "--out", str(out))
    assert code == 1
    assert one_line(err) == (f"actlab train: error: cannot write --out {out}: read-only file system "
                             f"in {tmp_path}; nothing was run")
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder anyway")
def test_unwritable_out_folder_is_refused_before_training(capsys, tmp_path, text):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run_cli(capsys, "train", "--data", text, *TINY, "--out", str(locked / "run"))
    finally:
        locked.chmod(0o755)
    assert code == 1
    assert "permission denied" in one_line(err) and "nothing was run" in err
    assert list(locked.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB file system (tmpfs), where one is allowed: root in a privileged place."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs",
                                            str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root and the right to mount")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_a_real_full_disk_and_a_real_read_only_one(small_disk, capsys, text):
    free = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 24 * 1024))
    out = small_disk / "run"
    code, _, err = run_cli(capsys, "train", "--data", text, *TINY, "--steps", "30", "--eval-every",
                           "10", "--n-embd", "64", "--out", str(out))
    line = one_line(err)
    assert code == 1
    assert line.startswith("actlab train: error: no space left on device (")
    assert line.endswith(f"what the run wrote so far is kept in {out}; actlab train --resume "
                         f"{out} continues from its last evaluation, --overwrite trains it afresh")
    assert (out / "config.json").is_file()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    code, _, err = run_cli(capsys, "train", "--data", text, *TINY, "--out", str(small_disk / "new"))
    assert code == 1
    assert one_line(err) == (f"actlab train: error: cannot write --out {small_disk / 'new'}: "
                             f"read-only file system in {small_disk}; nothing was run")


def test_store_on_a_full_disk_during_a_study(monkeypatch, capsys, tmp_path):
    def full(*_a, **_k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(sqlite3, "connect", full)
    out = tmp_path / "study"
    code, _, err = run_cli(capsys, "study", "vanishing", "--preset", "smoke", "--out", str(out),
                           "--quiet", "--executor", "serial")
    line = one_line(err)
    assert code == 1
    assert line.startswith("actlab study: error: ") and "database or disk is full" in line
    assert str(out) in line and "run the same command again" in line


def test_out_of_memory_is_the_machines(monkeypatch, capsys):
    from actlab.cli import models

    def oom(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 4000000000000 bytes.")

    monkeypatch.setattr(models, "cmd_acts", oom)
    code, _, err = run_cli(capsys, "acts")
    assert code == 1
    line = one_line(err)
    assert line.startswith("actlab acts: error: out of memory ([enforce fail")
    assert "4000000000000 bytes" in line


def test_memory_error_is_the_machines(monkeypatch, capsys):
    from actlab.cli import models

    def oom(args):
        raise MemoryError()

    monkeypatch.setattr(models, "cmd_zoo", oom)
    code, _, err = run_cli(capsys, "zoo")
    assert code == 1
    assert one_line(err) == ("actlab zoo: error: out of memory; nothing was run; a smaller model or "
                             "batch needs less")


def test_a_damaged_store_is_the_inputs_and_a_locked_one_the_machines():
    import argparse

    args = argparse.Namespace(command="study", out="res", work_started=True)
    damaged = sqlite3.DatabaseError("file is not a database")
    code, line = describe(args, damaged)
    assert code == 2 and line.startswith("error: the results store res/runs.sqlite is damaged")
    code, line = describe(args, sqlite3.OperationalError("database is locked"))
    assert code == 1 and "finished runs are kept in res" in line
    assert describe(args, EnvironmentFailure("the GPU fell off"))[0] == 1
    assert describe(args, ActlabError("a bad value"))[1] == "error: a bad value"


def test_compare_cuda_says_what_train_says(capsys, tmp_path, text):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code_t, _, err_t = run_cli(capsys, "train", "--data", text, *TINY, "--device", "cuda")
    code_c, _, err_c = run_cli(capsys, "compare", "--data", text, "--acts", "gelu,relu",
                               "--device", "cuda", "--out", str(tmp_path / "cmp"), "--quiet")
    assert code_t == code_c == 1
    assert one_line(err_t).removeprefix("actlab train:") == one_line(err_c).removeprefix("actlab compare:")
    assert not (tmp_path / "cmp").exists()


def test_compare_api_refuses_a_missing_device_before_any_run(tmp_path, text):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from actlab.lab.compare import run_compare

    with pytest.raises(EnvironmentFailure, match="cuda"):
        run_compare(text, ["gelu", "relu"], 30.0, 2, tmp_path / "cmp", progress=False, device="cuda")
    assert not (tmp_path / "cmp").exists()


def test_a_failed_calibration_run_is_one_line_not_a_key_error(tmp_path):
    from actlab.lab.compare import _check_calibration

    ok = {"params": {"act": "relu"}, "outcome": "completed", "wall_s": 1.0}
    bad = {"params": {"act": "gelu"}, "outcome": "error", "error": "ActlabError: no such thing"}
    with pytest.raises(ActlabError, match="the calibration run of gelu failed: ActlabError: no such thing"):
        _check_calibration([ok, bad], tmp_path)
    disk = {**bad, "error": "OSError: [Errno 28] No space left on device"}
    with pytest.raises(EnvironmentFailure, match="No space left"):
        _check_calibration([disk], tmp_path)
    _check_calibration([ok], tmp_path)  # nothing to say


# -- bugs, interrupts and --debug ---------------------------------------------------------------

def _bug(args):
    raise ZeroDivisionError("division by zero")


def test_a_bug_says_so_in_one_line(monkeypatch, capsys):
    from actlab.cli import models

    monkeypatch.setattr(models, "cmd_acts", _bug)
    code, _, err = run_cli(capsys, "acts")
    assert code == 1
    assert one_line(err) == ("actlab acts: internal error (a bug in actlab, not in your input): "
                             "ZeroDivisionError: division by zero; run again with --debug (or "
                             "ACTLAB_DEBUG=1) to see the traceback")


@pytest.mark.parametrize("how", ["--debug before", "--debug after", "ACTLAB_DEBUG=1"])
def test_debug_shows_the_traceback(monkeypatch, capsys, how):
    from actlab.cli import models

    monkeypatch.setattr(models, "cmd_acts", _bug)
    argv = {"--debug before": ["--debug", "acts"], "--debug after": ["acts", "--debug"],
            "ACTLAB_DEBUG=1": ["acts"]}[how]
    if how == "ACTLAB_DEBUG=1":
        monkeypatch.setenv("ACTLAB_DEBUG", "1")
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert err.startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError: division by zero" in err
    assert err.strip().splitlines()[-1] == ("actlab acts: internal error (a bug in actlab, not in "
                                            "your input): ZeroDivisionError: division by zero")


def test_debug_shows_the_traceback_of_bad_input_too(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--debug", "train", "--data", str(tmp_path / "nope.txt"), *TINY)
    assert code == 2
    assert "Traceback" in err and "ActlabError" in err
    assert err.strip().splitlines()[-1].startswith("actlab train: error: ")
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path / "nope.txt"), *TINY)
    assert code == 2 and "Traceback" not in one_line(err)


def test_actlab_debug_0_is_off(monkeypatch, capsys):
    from actlab.cli import models

    monkeypatch.setattr(models, "cmd_acts", _bug)
    monkeypatch.setenv("ACTLAB_DEBUG", "0")
    code, _, err = run_cli(capsys, "acts")
    assert code == 1 and "ZeroDivisionError" in one_line(err)


def test_a_recursion_in_actlab_is_a_bug_not_bad_input(monkeypatch, capsys):
    from actlab.cli import models

    def deep(args, n=0):
        return deep(args, n + 1)

    monkeypatch.setattr(models, "cmd_acts", deep)
    code, _, err = run_cli(capsys, "acts")
    assert code == 1 and "internal error" in one_line(err) and "RecursionError" in err


def test_ctrl_c_exits_130_in_one_line(monkeypatch, capsys):
    from actlab.cli import models

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "cmd_zoo", interrupted)
    code, _, err = run_cli(capsys, "zoo")
    assert code == 130
    assert one_line(err) == "actlab zoo: interrupted; nothing was run"


def test_error_lines_show_control_characters_escaped(monkeypatch, capsys):
    from actlab.cli import models

    def bad(args):
        raise ActlabError("first line\nsecond line with a \x00 byte")

    monkeypatch.setattr(models, "cmd_zoo", bad)
    code, _, err = run_cli(capsys, "zoo")
    assert code == 2
    assert one_line(err) == "actlab zoo: error: first line; second line with a \\x00 byte"


# -- standard output that cannot be written: real processes ----------------------------------

def _actlab(*argv, **kw):
    env = {**os.environ, "ACTLAB_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "actlab", *argv], env=env, timeout=180, **kw)


@pytest.mark.slow
def test_a_closed_pipe_exits_quietly():
    """The reader of stdout is gone before actlab writes (what `actlab zoo | head -1` comes
    to once head has its line): no traceback, no 'Exception ignored', nothing on stderr."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = _actlab("zoo", stdout=write, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write)
    assert proc.returncode == 1
    assert proc.stderr == ""


@pytest.mark.slow
def test_zoo_into_head():
    proc = subprocess.run(f"{sys.executable} -m actlab zoo --json | head -1", shell=True,
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "ACTLAB_DEBUG": ""})
    assert proc.stdout == "{\n"
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert proc.stderr == ""


@pytest.mark.slow
def test_a_full_stdout_is_one_line():
    if not Path("/dev/full").is_char_device():
        pytest.skip("no /dev/full device here")
    full = os.open("/dev/full", os.O_WRONLY)  # never O_CREAT: no file appears where it is missing
    try:
        proc = _actlab("zoo", stdout=full, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(full)
    assert proc.returncode == 1
    assert proc.stderr == "actlab zoo: error: cannot write to standard output: no space left on device\n"

"""Argument types shared by the subcommands (numbers with units and bounds), and the checks
every command makes before any work: its output folder, its device and its executor.

The checks run in the CLI, once, before a single run starts, so that a folder nobody can
write, a GPU that is not there or an executor that is not installed costs the user one line
instead of a traceback after minutes of training (or, in an audit, the same failure once per
study).
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import stat
import tempfile
from pathlib import Path

from actlab.errors import ActlabError, EnvironmentFailure

# Kernel interfaces: a results folder there could only ever fail, or write where it must not.
KERNEL_FOLDERS = ("/proc", "/sys")
PROBE_PREFIX = ".actlab-probe-"


def _int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int(text, 1)


def nonneg_int(text: str) -> int:
    return _int(text, 0)


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def nonneg_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


# -- checks before any work ------------------------------------------------------------------

def check_out_dir(path: str, flag: str = "--out") -> Path:
    """The folder a command will write: an existing folder, or one that can be created. Returns
    it as given (expanded, not resolved). Creates nothing: a rejected command leaves no folder.

    Bad input (ActlabError): an empty name, a NUL byte, a path under /proc or /sys, an existing
    file, a file where a parent folder should be, a name too long, a broken symbolic link.
    A folder the user may not write (read-only file system, permissions, a full disk that
    refuses even an empty file) is an EnvironmentFailure. Writability is probed with a real
    file (or folder) created and removed at once, since os.access does not know about
    read-only mounts and answers yes to root.
    """
    if path == "":
        raise ActlabError(f"{flag} is empty: name a folder")
    if "\0" in path:
        raise ActlabError(f"{flag} {path!r} contains a NUL byte")
    given = Path(path).expanduser()
    real = Path(os.path.realpath(given))
    for root in KERNEL_FOLDERS:
        if real == Path(root) or Path(root) in real.parents:
            raise ActlabError(f"{flag} {path}: {root} holds the kernel's files, not results; "
                              "choose another folder")
    target = Path(os.path.abspath(given))
    if os.path.islink(target) and not os.path.exists(target):
        raise ActlabError(f"{flag} {path} is a broken symbolic link")
    probe_in, creating = target, False
    while True:
        try:
            mode = os.stat(probe_in).st_mode
            break
        except FileNotFoundError:
            probe_in, creating = probe_in.parent, True
        except NotADirectoryError:
            raise ActlabError(f"{flag} {path}: a part of this path is a file, not a folder") from None
        except OSError as err:
            if err.errno == errno.ENAMETOOLONG:
                raise ActlabError(f"{flag} {path[:60]}...: the name is too long for the file "
                                  "system") from None
            raise EnvironmentFailure(f"cannot look at {flag} {path}: {_reason(err)}") from None
    if not stat.S_ISDIR(mode):
        if creating:
            raise ActlabError(f"{flag} {path}: {probe_in} is a file, not a folder")
        raise ActlabError(f"{flag} {path} exists and is not a folder")
    try:
        if creating:  # what mkdir -p will need: a new entry in the deepest existing folder
            os.rmdir(tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=probe_in))
        else:
            fd, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=probe_in)
            os.close(fd)
            os.unlink(name)
    except OSError as err:
        raise EnvironmentFailure(f"cannot write {flag} {path}: {_reason(err)} in {probe_in}") from None
    return given


def _reason(err: OSError) -> str:
    return (err.strerror or str(err)).lower() if err.errno else str(err)


def check_device(name: str | None) -> None:
    """Refuse a device this machine does not have, in one line, before any run: `cuda` needs
    torch.cuda.is_available(), `mps` torch.backends.mps.is_available(). auto and cpu always
    work. A missing device is the machine's, not the input's: EnvironmentFailure (exit 1)."""
    if name in (None, "auto", "cpu"):
        return
    import torch

    build = f"this torch build ({torch.__version__})"
    if name == "cuda" and not torch.cuda.is_available():
        raise EnvironmentFailure(f"--device cuda: {build} sees no CUDA device "
                                 "(torch.cuda.is_available() is False); use --device cpu or auto")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise EnvironmentFailure(f"--device mps: {build} has no usable MPS device "
                                     "(torch.backends.mps.is_available() is False); use --device "
                                     "cpu or auto")


def check_executor(executor: str | None, address: str | None, gpus_per_run: float | None = None,
                   cpus_per_run: float | None = None) -> None:
    """--executor ray needs Ray importable here (checked once, not once per study);
    --address, --gpus-per-run and --cpus-per-run mean nothing without it. A share Ray cannot
    schedule (negative, NaN, 1.5, zero CPUs) is refused here, before any run."""
    if address is not None and executor != "ray":
        raise ActlabError("--address names a Ray cluster: it needs --executor ray")
    from actlab.engine.executors import check_resource

    for flag, value, zero_ok in (("--gpus-per-run", gpus_per_run, True),
                                 ("--cpus-per-run", cpus_per_run, False)):
        if value is None:
            continue
        if executor != "ray":
            raise ActlabError(f"{flag} is a Ray resource request: it needs --executor ray")
        check_resource(flag, value, zero_ok)
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as err:
            raise EnvironmentFailure(f"--executor ray needs Ray, which cannot be imported here "
                                     f"({err}): pip install 'actlab[ray]', or use --executor "
                                     "local") from None

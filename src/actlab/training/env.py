"""What a run was produced by: package and torch versions, device and processor, threads, code
revision."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
import sys
from pathlib import Path

import torch

import actlab
from actlab.training import allocator

PACKAGE_DIR = Path(actlab.__file__).resolve().parent


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    missing = ((name == "cuda" and not torch.cuda.is_available())
               or (name == "mps" and not torch.backends.mps.is_available()))
    if missing:  # the machine lacks it: an environment failure, not a bad value
        from actlab.errors import EnvironmentFailure

        raise EnvironmentFailure(f"device {name!r} requested but this machine's torch cannot use "
                                 "it; use --device cpu or auto")
    return torch.device(name)


def git_revision() -> str | None:
    """Commit of the checkout the package runs from, with '+dirty' for local changes."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=5
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=5,
        )
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo on Linux), else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability() -> str:
    """The vector instruction set torch's CPU kernels were dispatched to (e.g. AVX2, AVX512).
    float32 results are bitwise reproducible on one machine but round differently across these,
    so a stored run names it."""
    return torch.backends.cpu.get_cpu_capability()


def code_hash() -> str:
    """Hash of the package's Python sources: identifies the code even outside git."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def environment(device: torch.device | None = None) -> dict:
    device = device or torch.device("cpu")
    env = {
        "actlab": actlab.__version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu": cpu_model(),
        "cpu_capability": cpu_capability(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "allocator": allocator.describe(),
        "git_revision": git_revision(),
        "code_hash": code_hash(),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env

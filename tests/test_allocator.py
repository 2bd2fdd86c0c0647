"""actlab.training.allocator: freed memory is reused instead of faulted in again (Linux + glibc only)."""

import json
import subprocess
import sys

import pytest

from actlab.training import allocator

glibc_only = pytest.mark.skipif(allocator._glibc() is None, reason="needs Linux with glibc")

# Allocate and free a 64 MiB tensor many times; print the minor page faults of the last rounds.
_PROBE = """
import json, resource, sys, torch
from actlab.training import allocator
applied = allocator.keep_freed_memory() if sys.argv[1] == "keep" else False
for _ in range(24):  # glibc's heap takes some rounds to hold a free block of the right size
    torch.ones(16 * 2**20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    torch.ones(16 * 2**20)
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"applied": applied, "faults": (after - before) / 4, "kind": allocator.describe()}))
"""


def _probe(mode: str, env_value: str | None = None) -> dict:
    import os

    env = dict(os.environ)
    env.pop(allocator.ENV, None)
    if env_value is not None:
        env[allocator.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                         env=env, check=True, timeout=120)
    return json.loads(out.stdout)


@glibc_only
def test_kept_memory_is_not_faulted_in_again():
    pages = 64 * 2**20 / 4096  # 16,384 pages per tensor
    system, kept = _probe("system"), _probe("keep")
    assert not system["applied"] and system["kind"] == "system"
    assert system["faults"] > 0.9 * pages  # every fresh mapping faults in all its pages
    assert kept["applied"] and kept["kind"] == "glibc-keep-freed"
    assert kept["faults"] < 0.01 * pages


@glibc_only
def test_environment_variable_turns_it_off():
    off = _probe("keep", env_value="system")
    assert not off["applied"] and off["kind"] == "system"
    assert off["faults"] > 0.9 * 64 * 2**20 / 4096

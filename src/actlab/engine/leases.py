"""Who is computing which run, so that two sweeps on one results folder compute each run once.

A sweep claims a run in the store just before starting it (Store.claim), as an owner named
host:pid:token, and a thread refreshes the heartbeat of its claims every HEARTBEAT_S
seconds while it runs. Another sweep treats a claim as held while its owner is alive:

- its heartbeat is younger than LEASE_S (on any host: the only sign of life a process on
  another machine gives through a shared folder), and
- on this host, its process exists and is not a zombie (os.kill(pid, 0) and /proc), so a
  killed sweep's claims are taken over at once instead of after the lease; within this
  process, the sweep that made it is still running (a sweep stopped by Ctrl-C releases its
  claims, and one that could not is recognised by its token).

A claim whose owner is gone is taken over: that is how a run left 'running' by a killed
process is run again. The lease (2 minutes, 12 heartbeats) also covers a process id reused
by an unrelated process after a crash. What it cannot tell apart: a sweep stalled (stopped
with Ctrl-Z, a machine suspended) for longer than the lease loses its claims, and on
waking computes runs that another sweep may be computing too; both then store the same
deterministic result, one after the other, each write whole.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sqlite3
import threading
import time

from actlab.errors import EnvironmentFailure, StoreError
from actlab.engine.store import Store

HEARTBEAT_S = 10.0
LEASE_S = 120.0
_HOST = socket.gethostname()
# Owners of the sweeps running in this process (a process may run one sweep after another).
_ACTIVE: set[str] = set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:  # a killed process its parent has not reaped yet is a zombie: gone for our purpose
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS): os.kill's answer stands
        return True


def alive(owner: str | None, heartbeat: float | None, now: float | None = None) -> bool:
    """Whether the sweep named `owner`, last heard of at `heartbeat`, may still be running."""
    if not owner or heartbeat is None:
        return False
    now = time.time() if now is None else now
    if now - heartbeat > LEASE_S:
        return False
    host, pid, _token = (owner.rsplit(":", 2) + ["", ""])[:3]
    if host != _HOST:
        return True
    try:
        pid_n = int(pid)
    except ValueError:
        return True  # not ours to judge: the lease decides
    if pid_n == os.getpid():
        return owner in _ACTIVE
    return _pid_alive(pid_n)


class Lease:
    """One sweep's name in a store while it runs: claims runs under it and keeps them fresh.

    Use as a context manager: on entry the heartbeat thread starts; on exit it stops and the
    runs still held (a sweep stopped by an exception or Ctrl-C) are released.
    """

    def __init__(self, store: Store, interval: float = HEARTBEAT_S):
        self.store = store
        self.interval = interval
        self.owner = f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="actlab-heartbeat", daemon=True)

    def claim(self, run_id: str, study: str, config: dict) -> str | None:
        """None if this sweep now holds the run, else who does ("finished" or an owner)."""
        return self.store.claim(run_id, study, config, self.owner, alive)

    def __enter__(self) -> Lease:
        _ACTIVE.add(self.owner)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        try:
            # A release that fails leaves the claims to expire: another sweep sees this process
            # gone once it exits, or the lease run out.
            with contextlib.suppress(sqlite3.Error, StoreError, EnvironmentFailure):
                self.store.release(self.owner)
        finally:
            _ACTIVE.discard(self.owner)

    def _beat(self) -> None:
        """Refresh this sweep's claims through a connection of its own (a connection
        belongs to the thread that made it); a locked or failing write waits for the next."""
        store = None
        try:
            while not self._stop.wait(self.interval):
                with contextlib.suppress(sqlite3.Error, StoreError, EnvironmentFailure):
                    store = store or Store(self.store.path, timeout=5.0, check=False)
                    store.touch(self.owner)
        finally:
            if store is not None:
                store.close()

"""How a results store tells damage from data: SQLite's own reports, and row checksums.

SQLite notices a damaged file when it reads a page whose structure is wrong (a garbage
header, overwritten b-tree pages): `PRAGMA quick_check` on open, or any later statement,
reports SQLITE_NOTADB or SQLITE_CORRUPT, which become one StoreError line naming the file and
what to do. Bytes changed inside a row's text keep the structure intact, so each finished
row carries the sha256 of exactly the text stored for it; a row that no longer matches is
damaged, whatever the change.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shlex
import sqlite3
from pathlib import Path

from actlab.errors import EnvironmentFailure, StoreError

# SQLite's primary result codes for a damaged file: SQLITE_CORRUPT ("database disk image is
# malformed") and SQLITE_NOTADB ("file is not a database").
_DAMAGE_CODES = (11, 26)
# ... and for a machine that cannot give the file what it needs: SQLITE_PERM, SQLITE_READONLY,
# SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
_ENVIRONMENT_CODES = (3, 8, 10, 13, 14)


def checksum(run_id: str, config: str, outcome, result: str, env: str | None) -> str:
    """sha256 of the id, config, outcome, result and environment text of a finished run
    (joined by NUL, which JSON text never holds): one changed character changes it."""
    fields = (run_id, config, "" if outcome is None else str(outcome), result, env or "")
    return hashlib.sha256("\0".join(fields).encode("utf-8", "surrogatepass")).hexdigest()


def problem(path: Path, run_id: str, config: str | None, outcome, result: str | None,
            env: str | None, digest: str | None) -> str | None:
    """What is wrong with a finished row's stored text, or None if it is intact. A row with
    no checksum was written before rows had one: it is accepted if its JSON decodes."""
    if digest is None:
        try:
            json.loads(config), json.loads(result), env is None or json.loads(env)
        except (TypeError, ValueError) as err:
            return f"stored result of run {run_id} in {path} cannot be decoded ({err})"
        return None
    if result is None or config is None or checksum(run_id, config, outcome, result, env) != digest:
        return f"stored result of run {run_id} in {path} does not match its checksum"
    return None


def damaged(path: Path, what: str) -> str:
    """The one line that names a damaged store file and what to do with it."""
    where, what = shlex.quote(str(path)), " ".join(what.split())
    return (f"results store {path} is damaged ({what}): move it aside (mv {where} "
            f"{where}.damaged) and run again; finished runs in it will be recomputed")


def unusable(path: Path, why: str) -> str:
    """The one line for a damaged row met by a reader that cannot recompute it (a report)."""
    where = shlex.quote(str(path))
    return (f"{why}; run its study again to recompute it, or move the file aside "
            f"(mv {where} {where}.damaged) to recompute every run")


def is_damage(err: BaseException) -> bool:
    """Whether an sqlite3 error says the file itself is damaged (not locked, full or missing)."""
    if not isinstance(err, sqlite3.DatabaseError):
        return False
    if _undecodable(err):
        return True
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _DAMAGE_CODES
    return type(err) is sqlite3.DatabaseError  # the class Python gives those two codes


def _undecodable(err: BaseException) -> bool:
    """Python's sqlite3 reading text that is not UTF-8 (changed bytes inside a stored string)."""
    return isinstance(err, sqlite3.OperationalError) and str(err).startswith("Could not decode to UTF-8")


def _is_environment(err: sqlite3.Error) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _ENVIRONMENT_CODES


def guarded(method):
    """Decorate a method of an object with a `path`: SQLite's report of a damaged file, at any
    statement inside it, becomes one StoreError line; a full disk, a read-only or unreadable
    file one EnvironmentFailure line (what was committed before stays in the file)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as err:
            if is_damage(err):
                what = "stored text that is not UTF-8" if _undecodable(err) else str(err)
                raise StoreError(damaged(self.path, what)) from None
            if _is_environment(err):
                raise EnvironmentFailure(
                    f"cannot use results store {self.path} ({err}): the runs finished so far are "
                    "kept in it; free disk space or fix its permissions, then run the same "
                    "command again to resume") from None
            raise
    return wrapper

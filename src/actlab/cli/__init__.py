"""The `actlab` command line. Entry points stay thin: parse, call the library, print.

`main()` is the one error boundary of every command, so that no expected failure reaches the
user as a traceback:

- bad input (ActlabError, StoreError included): one line `actlab CMD: error: ...`, exit 2;
- a failure of the machine (EnvironmentFailure; an OSError such as a full disk, a read-only
  file system or a permission; a results store the disk let down; out of memory): one line
  naming what failed and where, what was kept and how to resume, exit 1;
- standard output closed by its reader (`actlab zoo | head -1`): quiet, exit 1; standard
  output that cannot be written (/dev/full): one line, exit 1;
- Ctrl-C: one line, exit 130;
- anything else is a bug: one line that says so and how to see the traceback, exit 1.

`--debug` (before or after the command) or ACTLAB_DEBUG=1 adds the traceback to any of them.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback

from actlab.errors import ActlabError, EnvironmentFailure

DEBUG_ENV = "ACTLAB_DEBUG"
BAD_INPUT, FAILED, INTERRUPTED = 2, 1, 130

# OSErrors that say the path the user gave is wrong, not that the machine failed.
_INPUT_ERRNOS = {errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
                 errno.ELOOP}
_WHAT = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
         errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
         errno.EPERM: "operation not permitted", errno.EIO: "input/output error",
         errno.ENOMEM: "out of memory"}
# sqlite result codes of a file that is not (or no longer) a readable database
_DAMAGED_STORE = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
# Where a RecursionError means a pathologically nested input, not a bug in actlab.
_PARSERS = ("json", "tomllib", "tomli", "ast")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line (and still exits 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from actlab.cli import hf, models, runs, studies

    parser = _Parser(prog="actlab", description="Measure what activation functions do in small GPTs, "
                                                "and choose one with evidence.")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of any error (also: {DEBUG_ENV}=1)")
    parser.add_argument("--version", action="version", version=f"actlab {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    models.register(sub)
    runs.register(sub)
    studies.register(sub)
    hf.register(sub)
    for command in sub.choices.values():  # `actlab train ... --debug` works too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help=f"show the traceback of any error (also: {DEBUG_ENV}=1)")
    return parser


def _version() -> str:
    from actlab.version import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = debug or args.debug
    stdout = sys.stdout = _Watched(sys.stdout)
    try:
        from actlab.training import allocator

        allocator.keep_freed_memory()  # this process is ours: reuse freed memory (allocator.py)
        code = args.func(args)
        sys.stdout.flush()  # a full or closed stdout fails here, inside the boundary
        return code
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        _say(f"actlab {args.command}: interrupted; {_kept(args, interrupted=True)}")
        return INTERRUPTED
    except Exception as err:  # noqa: BLE001 - the boundary: every failure becomes one line
        if isinstance(err, OSError) and err is stdout.failed:
            _silence_stdout()
            if isinstance(err, BrokenPipeError):  # the reader went away: nothing to tell it
                return FAILED
            _say(f"actlab {args.command}: error: cannot write to standard output: {_reason(err)}")
            return FAILED
        if debug:
            traceback.print_exc()
        code, message = describe(args, err, debug)
        _say(f"actlab {args.command}: {message}")
        return code
    finally:
        if sys.stdout is stdout:
            sys.stdout = stdout.stream


def describe(args: argparse.Namespace, err: Exception, debug: bool = False) -> tuple[int, str]:
    """(exit code, the line after `actlab CMD: `) for an exception that ended a command (other
    than a failed write to standard output, which main() tells apart)."""
    if isinstance(err, ActlabError):
        return BAD_INPUT, f"error: {_one_line(err)}"
    if isinstance(err, EnvironmentFailure):
        return FAILED, f"error: {_with_kept(_one_line(err), args)}"
    if isinstance(err, OSError):
        return _os_error(args, err)
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(err, sqlite3.DatabaseError) and not isinstance(
            err, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError,
                  sqlite3.NotSupportedError)):
        return _store_error(args, err, sqlite3)
    if isinstance(err, MemoryError) or _torch_out_of_memory(err):
        detail = _one_line(err)[:200]
        return FAILED, (f"error: out of memory{f' ({detail})' if detail else ''}; "
                        f"{_kept(args)}; a smaller model or batch needs less")
    if isinstance(err, RecursionError) and _raised_in_parser(err):
        files = [f for f in (getattr(args, "config", None), getattr(args, "claims", None)) if f]
        where = f" ({', '.join(files)})" if files else ""
        return BAD_INPUT, (f"error: an input file is nested too deeply to read{where}: "
                           f"{_one_line(err)}")
    how = "" if debug else f"; run again with --debug (or {DEBUG_ENV}=1) to see the traceback"
    return FAILED, (f"internal error (a bug in actlab, not in your input): "
                    f"{type(err).__name__}: {_one_line(err)[:300]}{how}")


class _Watched:
    """sys.stdout for the length of a command, noting the error of a write or flush that
    failed: an OSError raised there (a closed pipe, /dev/full) is about standard output, not
    about any file the command writes, and the error itself does not say so (no file name,
    and the stream's buffer may be empty again by the time it reaches main)."""

    def __init__(self, stream):
        self.stream, self.failed = stream, None

    def write(self, text):
        try:
            return self.stream.write(text)
        except OSError as err:
            self.failed = err
            raise

    def flush(self):
        try:
            return self.stream.flush()
        except OSError as err:
            self.failed = err
            raise

    def __getattr__(self, name):  # isatty, fileno, encoding, buffer, ...: the stream's own
        return getattr(self.stream, name)


def _os_error(args, err: OSError) -> tuple[int, str]:
    where = err.filename
    if err.errno in _INPUT_ERRNOS:
        place = f"{where}: " if where is not None else ""
        return BAD_INPUT, f"error: {place}{_reason(err)}"
    if where is None:
        out = getattr(args, "out", None)
        where = f"in {out}" if out else "unknown file"
    return FAILED, f"error: {_reason(err)} ({where}); {_kept(args)}"


def _store_error(args, err, sqlite3) -> tuple[int, str]:
    """A damaged store file is the input's problem (exit 2, as StoreError); one that the disk
    lets down (full, read-only, I/O error, locked) is the machine's (exit 1)."""
    store = _store_path(args)
    name = getattr(err, "sqlite_errorname", None)
    damaged = name in _DAMAGED_STORE or (name is None and not isinstance(err, sqlite3.OperationalError))
    if damaged:
        return BAD_INPUT, (f"error: the results store {store} is damaged ({_one_line(err)}): move "
                           "it away to start afresh (its runs are lost), or use another --out")
    return FAILED, f"error: the results store {store} failed: {_one_line(err)}; {_kept(args)}"


def _store_path(args) -> str:
    out = getattr(args, "out", None) or getattr(args, "dir", None)
    if not out:
        return "runs.sqlite"
    if args.command in ("audit", "report"):
        return os.path.join(out, "<study>", "runs.sqlite")
    return os.path.join(out, "runs.sqlite")


def _kept(args, interrupted: bool = False) -> str:
    """What the failed command leaves behind and how to go on from there."""
    if not getattr(args, "work_started", False):
        return "nothing was run"
    out = getattr(args, "out", None)
    if args.command in ("study", "compare", "audit"):
        return f"finished runs are kept in {out}; run the same command again to resume"
    if args.command == "train":
        if not out:
            return "nothing was written; run the same command again"
        if interrupted:
            return (f"metrics and weights so far are kept in {out}; actlab train --resume {out} "
                    "continues from its last saved state")
        return (f"what the run wrote so far is kept in {out}; actlab train --resume {out} "
                "continues from its last evaluation, --overwrite trains it afresh")
    if args.command == "report":
        return f"the stored results in {args.dir} are kept; run the same command again"
    return "nothing was written; run the same command again"


def _with_kept(message: str, args) -> str:
    low = message.lower()
    return message if "kept" in low or "nothing was" in low else f"{message}; {_kept(args)}"


def _reason(err: OSError) -> str:
    if err.errno in _WHAT:
        return _WHAT[err.errno]
    return (err.strerror or _one_line(err) or type(err).__name__).lower()


def _torch_out_of_memory(err: Exception) -> bool:
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(err, oom):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _raised_in_parser(err: BaseException) -> bool:
    """Whether a RecursionError came out of reading a file (json, tomllib, ast), where the
    nesting of the input sets the depth, rather than out of actlab's own code."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return False
    module = os.path.splitext(os.path.basename(frames[-1].filename))[0]
    folder = os.path.basename(os.path.dirname(frames[-1].filename))
    return module in _PARSERS or folder in _PARSERS


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush at exit does not fail
    again and print 'Exception ignored' (the recipe of Python's signal documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (an in-process capture): nothing will flush it at exit


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # stderr is gone too: the exit code is all that is left


def _one_line(text) -> str:
    """A message on one line, control characters (a NUL in a name) shown escaped."""
    parts = [" ".join(p.split()) for p in str(text).splitlines()]
    joined = "; ".join(p for p in parts if p)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in joined)

"""The `actlab` command line. Entry points stay thin: parse, call the library, print.

Every user error surfaces as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from actlab.errors import ActlabError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line (and still exits 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from actlab.cli import models, studies

    parser = _Parser(prog="actlab", description="Measure what activation functions do in small GPTs, "
                                                "and choose one with evidence.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    models.register(sub)
    studies.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from actlab.training import allocator

    allocator.keep_freed_memory()  # this process is ours: reuse freed memory (allocator.py)
    try:
        return args.func(args)
    except ActlabError as err:
        print(f"actlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"actlab {args.command}: interrupted; finished runs are kept", file=sys.stderr)
        return 130

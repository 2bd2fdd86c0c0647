"""`--fail-on`: verdicts that make `actlab audit` (or `actlab study`) exit non-zero, so that a
claim can gate a CI pipeline.

The names are the four verdicts of actlab.article.verdicts, comma-separated, matched without
regard to case, and with `_` or `-` for a space (`not_supported`). They are checked when the
command line is parsed, so an unknown name stops the command before anything runs. The
command writes every file first; only its exit code says the verdicts tripped it.
"""

from __future__ import annotations

import argparse

from actlab.article.verdicts import VERDICTS

# 1: a machine's failure, 2: bad input, 130: interrupted (actlab.cli); this one is the verdicts'.
VERDICT_TRIPPED = 3


def verdict_names(text: str) -> frozenset[str]:
    """The verdicts named in `text` ("NOT SUPPORTED,inconclusive"); argparse's type= for
    --fail-on, so an unknown or missing name is a one-line usage error (exit 2)."""
    names = [" ".join(part.replace("_", " ").replace("-", " ").split()).upper()
             for part in text.split(",")]
    names = [n for n in names if n]
    if not names:
        raise argparse.ArgumentTypeError(f"no verdict named; give one or more of {_known()}")
    unknown = [n for n in names if n not in VERDICTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown verdict {unknown[0]!r}; known: {_known()}")
    return frozenset(names)


def _known() -> str:
    return ", ".join(VERDICTS)


def tripped(verdicts: dict[str, str | None], fail_on: frozenset[str] | None) -> list[tuple[str, str]]:
    """(study or claim folder, verdict) for each verdict among `fail_on`, in the given order;
    one without a verdict (it failed) trips nothing here: its error has an exit code of its own."""
    if not fail_on:
        return []
    return [(name, v) for name, v in verdicts.items() if v in fail_on]


def tripped_line(command: str, hits: list[tuple[str, str]]) -> str:
    """The one line that names what tripped --fail-on, for standard error."""
    listed = ", ".join(f"{name} {v}" for name, v in hits)
    return (f"actlab {command}: --fail-on: {len(hits)} verdict{'s' if len(hits) != 1 else ''} "
            f"tripped it: {listed}")

"""The version of the layout of the JSON files actlab writes, so that tools built on them can
tell which fields they hold (docs/outputs.md lists every file and field).

One integer shared by every file kind: each JSON object actlab writes to a run, study,
compare or audit folder carries it as its top-level "schema_version". It goes up when a
documented field changes meaning or goes away in any of them; a new field does not raise it,
so a reader should ignore the keys it does not know. A file without the key was written before
versions were recorded and has the layout of version 1. metrics.jsonl rows carry no version:
they follow the one in the run folder's config.json.

It imports nothing of actlab but its errors, so that config and every writer can use it.
"""

from __future__ import annotations

from actlab.errors import ActlabError

SCHEMA_VERSION = 1
KEY = "schema_version"


def versioned(obj: dict) -> dict:
    """`obj` with the current schema_version as its first key (a copy; `obj` is left as it was)."""
    return {KEY: SCHEMA_VERSION, **{k: v for k, v in obj.items() if k != KEY}}


def newer_than_known(obj: dict) -> bool:
    """Whether `obj` (a file's top-level object) says it was written by a later layout than
    this actlab reads; a missing or malformed version is not newer (files before versions)."""
    version = obj.get(KEY)
    return isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION


def unversioned(obj: dict, where: str) -> dict:
    """`obj` without its schema_version, for readers that spread a file's keys into their own
    records; a file of a later layout is refused in one line (ActlabError) naming `where`."""
    if newer_than_known(obj):
        raise ActlabError(f"{where} has schema_version {obj[KEY]}, newer than the "
                          f"{SCHEMA_VERSION} this actlab reads: upgrade actlab to read it")
    return {k: v for k, v in obj.items() if k != KEY}

"""Errors that reach the user as one line, never a traceback (the CLI's error boundary).

ActlabError: a problem with the user's input (a value, a file, a name): exit 2.
EnvironmentFailure: the machine let a run down (disk full, read-only, permission, device
missing, out of memory): exit 1, with what was kept and how to resume.
StoreError: a results store (runs.sqlite) or a stored row that is damaged: exit 2, naming
the file and what to do with it.
"""


class ActlabError(Exception):
    """A problem with the user's input: printed as one line, never a traceback."""


class EnvironmentFailure(Exception):
    """A failure of the environment, not of the input: printed as one line, exit 1."""


class StoreError(ActlabError):
    """A damaged results store or stored row: named in one line with what to do."""

"""Errors that reach the user as one line (the CLI prints them and exits 2)."""


class ActlabError(Exception):
    """A problem with the user's input: printed as one line, never a traceback."""

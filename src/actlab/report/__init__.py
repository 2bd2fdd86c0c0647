"""Render an audit folder's stored results as report.html, report.md and verdicts.json.

Everything is read back from disk (each study's verdict.json, figures and runs.sqlite, and
the folder's audit.json), so `actlab report DIR` re-renders without running anything.
"""

from actlab.report.collect import collect  # noqa: F401
from actlab.report.render import render_report  # noqa: F401

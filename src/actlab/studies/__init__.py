"""The studies, one per claim. Importing this package registers each of them."""

from actlab.studies.base import (  # noqa: F401
    CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, PRESETS, STUDIES, SUPPORTED, Verdict, get_study,
    register_study, write_verdict,
)

"""The studies, one per claim. Importing this package registers each of them."""

from actlab.studies.base import (  # noqa: F401
    CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, PRESETS, STUDIES, SUPPORTED, Verdict, get_study,
    register_study, write_verdict,
)

# Importing a study module registers it (the order is the article's).
from actlab.studies import vanishing  # noqa: F401,E402  (C1)
from actlab.studies import centering  # noqa: F401,E402  (C2)
from actlab.studies import convergence  # noqa: F401,E402  (C3)
from actlab.studies import output_head  # noqa: F401,E402  (C4)
from actlab.studies import gates  # noqa: F401,E402  (C5)
from actlab.studies import facts  # noqa: F401,E402  (F)

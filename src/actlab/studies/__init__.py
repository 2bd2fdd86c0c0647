"""The studies, one per claim. Importing this package registers each of them."""

from actlab.article.verdicts import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED  # noqa: F401
from actlab.studies.base import (  # noqa: F401
    PRESET_NAMES, STUDIES, Verdict, get_study, register_study, write_verdict,
)

# Importing a study module registers it (the order is the article's).
from actlab.studies.vanishing import study as vanishing  # noqa: F401,E402  (C1)
from actlab.studies.centering import study as centering  # noqa: F401,E402  (C2)
from actlab.studies.convergence import study as convergence  # noqa: F401,E402  (C3)
from actlab.studies.output_head import study as output_head  # noqa: F401,E402  (C4)
from actlab.studies.gates import study as gates  # noqa: F401,E402  (C5)
from actlab.studies.scaling import study as scaling  # noqa: F401,E402  (C6)
from actlab.studies.stability import study as stability  # noqa: F401,E402  (C7)
from actlab.studies import facts  # noqa: F401,E402  (F)

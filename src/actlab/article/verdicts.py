"""The four verdicts a decision rule can give a claim, as written in every verdict.json and
report. No imports: the model zoo and the report read them without loading torch."""

SUPPORTED = "SUPPORTED"
CAVEAT = "SUPPORTED WITH CAVEAT"
NOT_SUPPORTED = "NOT SUPPORTED"
INCONCLUSIVE = "INCONCLUSIVE"
VERDICTS = (SUPPORTED, CAVEAT, NOT_SUPPORTED, INCONCLUSIVE)

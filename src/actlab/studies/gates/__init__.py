"""C5: does sigmoid survive only as a gate (GLU, gated attention, sigmoid attention)?

study.py holds the rule and the decision, runs.py one run and its measurements,
words.py the summary line and caveats, figures.py draws from plain data."""

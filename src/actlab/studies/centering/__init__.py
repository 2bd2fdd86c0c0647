"""C2: do sigmoid's non-zero-centred outputs make descent zig-zag?

study.py holds the rule and the decision, runs.py one run and its measurements,
figures.py draws from plain data."""

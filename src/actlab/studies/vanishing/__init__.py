"""C1: do sigmoid's gradients vanish with depth (plain MLP vs residual GPT)?

study.py holds the rule and the decision, runs.py one run and its measurements,
figures.py draws from plain data."""

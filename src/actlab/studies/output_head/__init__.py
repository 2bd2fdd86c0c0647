"""C4: does the output layer need softmax, or can independent sigmoids serve?

study.py holds the rule and the decision, runs.py one run and its measurements,
figures.py draws from plain data."""

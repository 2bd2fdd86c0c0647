"""C3: does sigmoid train to a worse loss than ReLU, GELU and Swish?

study.py holds the rule and the decision, runs.py one run and its measurements,
figures.py draws from plain data."""

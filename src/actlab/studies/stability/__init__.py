"""C7: do ReLU, GELU and Swish train faster and more reliably than sigmoid?

study.py holds the rule and the decision, presets.py the sizes, runs.py the two stages of
runs (a learning-rate grid, then evaluation seeds at each best rate), evidence.py the
statistics of each part, figures.py draws from plain data."""

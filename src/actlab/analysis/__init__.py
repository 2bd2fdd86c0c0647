"""Pure functions on stored numbers: confidence intervals, paired tests, summaries and
rankings, and the helpers every figure shares."""

"""A finished run folder as a product: load its model and tokenizer, and sample text from it.

    from actlab.runs import load_run, sample
    run = load_run("runs/gelu")                 # model (eval mode), tokenizer, config, summary
    print(sample(run, prompt="ROMEO:", tokens=100, temperature=0.8, seed=0))
"""
from actlab.runs.generate import generate, sample
from actlab.runs.load import LoadedRun, load_run

__all__ = ["LoadedRun", "generate", "load_run", "sample"]

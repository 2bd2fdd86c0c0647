"""actlab: measure what activation functions do in small GPTs, and choose one with evidence.

The public API, for notebooks and scripts (each name is imported when first used, so
`import actlab` itself costs next to nothing):

    import actlab
    cfg = actlab.TrainConfig(model=actlab.ModelConfig(act="swiglu"), steps=300)
    result = actlab.train(cfg, "runs/swiglu")   # result.model is the trained GPT
    run = actlab.load_run("runs/swiglu")         # model, tokenizer, config
    print(actlab.sample(run, prompt="ROMEO:", tokens=100))
    ranking = actlab.compare(["gelu", "sigmoid"], budget="5m")
    verdict = actlab.run_study("vanishing", preset="smoke")

Configs:    ModelConfig, TrainConfig
Models:     GPT, train, RunResult, load_run, LoadedRun, sample, generate
Studies:    run_study, compare, audit
Activations: register, get_activation, activation_names, swap_activation (any Hugging Face model)
Hugging Face: to_hf, from_hf, export_run
Errors:     ActlabError (bad input, one line)
"""

from __future__ import annotations

import importlib

from actlab.version import __version__

# public name -> (module, attribute)
_API = {
    "ModelConfig": ("actlab.config", "ModelConfig"),
    "TrainConfig": ("actlab.config", "TrainConfig"),
    "GPT": ("actlab.nn.gpt", "GPT"),
    "train": ("actlab.training.loop", "train"),
    "RunResult": ("actlab.training.metrics", "RunResult"),
    "load_run": ("actlab.runs", "load_run"),
    "LoadedRun": ("actlab.runs", "LoadedRun"),
    "sample": ("actlab.runs", "sample"),
    "generate": ("actlab.runs", "generate"),
    "run_study": ("actlab.lab.api", "run_study"),
    "compare": ("actlab.lab.api", "compare"),
    "audit": ("actlab.lab.api", "audit"),
    "register": ("actlab.activations", "register"),
    "get_activation": ("actlab.activations", "get"),
    "activation_names": ("actlab.activations", "names"),
    "swap_activation": ("actlab.hf.swap", "swap_activation"),
    "to_hf": ("actlab.hf.convert", "to_hf_gpt2"),
    "from_hf": ("actlab.hf.convert", "from_hf_gpt2"),
    "export_run": ("actlab.hf.export", "export_run"),
    "ActlabError": ("actlab.errors", "ActlabError"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'actlab' has no attribute {name!r}")
    module, attr = _API[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

"""The one place that imports transformers, so a missing install is one line that says what to do."""
from __future__ import annotations

from actlab.errors import ActlabError

INSTALL = "pip install 'actlab[hf]'"


def transformers():
    """The transformers module, or a one-line ActlabError naming the extra that installs it."""
    try:
        import transformers as module
    except ImportError as err:
        raise ActlabError(f"Hugging Face interop needs transformers, which is not installed "
                          f"({err}): {INSTALL}") from None
    return module


def act2fn() -> dict:
    """transformers' ACT2FN (name -> activation) of the installed version."""
    transformers()
    from transformers.activations import ACT2FN

    return ACT2FN

"""The private torch APIs actlab relies on, all in one place: inductor's decomposition table and
compiler entry point, and AOTAutograd's cache switch (used by training/compile.py). A torch that
moves or renames them fails tests/test_torch_private.py by name instead of a training run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable


def inductor_decompositions() -> dict:
    """A copy of the decomposition table inductor applies by default (op overload -> function)."""
    from torch._inductor.decomposition import select_decomp_table

    return dict(select_decomp_table())


def inductor_compiler() -> Callable:
    """inductor's compile_fx(graph, example_inputs, decompositions=..., config_patches=...)."""
    from torch._inductor.compile_fx import compile_fx

    return compile_fx


def no_autograd_cache() -> contextlib.AbstractContextManager:
    """A context in which AOTAutograd neither reads nor writes its on-disk cache."""
    from torch._functorch import config as functorch_config

    return functorch_config.patch(enable_autograd_cache=False)

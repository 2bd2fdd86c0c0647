"""The private torch APIs actlab uses (training/torch_private.py) still exist with the shape it
relies on: if a new torch moves one, this fails by name rather than a compiled run later."""
import inspect

import torch

from actlab.training import torch_private


def test_inductor_decomposition_table_holds_the_gelu_entries_compile_rewrites():
    table = torch_private.inductor_decompositions()
    aten = torch.ops.aten
    for op in (aten.gelu.default, aten.gelu_backward.default):
        assert callable(table[op]), op
    x = torch.linspace(-3, 3, 7)
    # The entries are decompositions, not the ops: they compute GELU from simpler ops.
    torch.testing.assert_close(table[aten.gelu.default](x, approximate="tanh"),
                               torch.nn.functional.gelu(x, approximate="tanh"))
    assert table is not torch_private.inductor_decompositions()  # a copy each time: safe to edit


def test_inductor_compiler_takes_decompositions_and_config_patches():
    params = inspect.signature(torch_private.inductor_compiler()).parameters
    assert {"decompositions", "config_patches"} <= set(params)


def test_autograd_cache_switch_turns_the_cache_off_inside_only():
    from torch._functorch import config

    before = config.enable_autograd_cache
    with torch_private.no_autograd_cache():
        assert config.enable_autograd_cache is False
    assert config.enable_autograd_cache == before

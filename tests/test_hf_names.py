"""Every activation name of transformers' ACT2FN resolves in actlab's registry to the same function."""
import json
import math

import pytest
import torch

from actlab import activations
from actlab.activations import get, get_spec, names
from actlab.activations.registry import aliases_of

transformers = pytest.importorskip("transformers")
from transformers.activations import ACT2CLS, ACT2FN  # noqa: E402

from actlab.errors import ActlabError  # noqa: E402
from actlab.hf import actlab_name, hf_act_name  # noqa: E402

GRID = torch.linspace(-8, 8, 2001, dtype=torch.float64)
NEW = ["gelu_10", "hard_swish", "laplace", "sqrt_softplus", "prelu", "xielu"]


def reference(key: str, dtype: torch.dtype):
    """ACT2FN[key] in `dtype`. The two with learned parameters at their initial values: prelu's
    float32 slope is cast to `dtype` (torch's prelu refuses mixed dtypes); xielu is built with
    its parameters in `dtype`, since ACT2FN's default bfloat16 rounds 0.8 and 0.5 by ~4e-3."""
    if key == "xielu":
        return ACT2CLS[key](dtype=dtype)
    return ACT2FN[key].to(dtype)


def test_the_installed_act2fn_keys_are_the_ones_covered():
    # a new key in a later transformers fails here first, with its name
    assert {get_spec(k).name for k in ACT2FN} <= set(names())
    assert {"gelu", "gelu_new", "relu", "silu", "linear"} <= set(ACT2FN)


@pytest.mark.parametrize("key", list(ACT2FN))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_same_function_as_act2fn(key, dtype):
    x = GRID.to(dtype)
    with torch.no_grad():
        ours, theirs = get(key)(x), reference(key, dtype)(x)
    assert ours.dtype == theirs.dtype == dtype
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_xielu_default_act2fn_differs_only_by_its_bfloat16_parameters():
    with torch.no_grad():
        diff = (get("xielu")(GRID) - ACT2FN["xielu"](GRID)).abs() / (1 + GRID.abs() ** 2)
    assert 1e-4 < diff.max().item() < 1e-2  # a rounding of 0.8 and 0.5, not another function


def test_tanh_gelu_family_is_one_entry_and_erf_gelu_another():
    tanh = {k for k in ACT2FN if get_spec(k).name == "gelu_tanh"}
    assert tanh == {"gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh", "gelu_accurate", "gelu_fast"}
    assert get_spec("gelu_python").name == "gelu" and get_spec("linear").name == "identity"
    # gelu_fast rounds sqrt(2/pi) to 0.7978845608: a 1e-12 change, not an approximation
    d = (ACT2FN["gelu_fast"](GRID) - torch.nn.functional.gelu(GRID, approximate="tanh")).abs().max()
    assert d.item() < 1e-11
    assert (get("gelu")(GRID) - get("gelu_fast")(GRID)).abs().max().item() > 1e-4


def test_aliases_add_no_rows_to_actlab_acts(capsys):
    from actlab.cli import main

    assert main(["acts", "--json"]) == 0
    rows = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert rows == names()
    assert not {"gelu_new", "linear", "swish", "hardswish", "sqrtsoftplus", "gelu_python"} & set(rows)
    assert set(NEW) <= set(rows)
    assert aliases_of("gelu_tanh")[:2] == ["gelu_new", "gelu_pytorch_tanh"]


@pytest.mark.parametrize("name", NEW)
def test_new_entries_keep_the_registry_contract(name):
    spec = get_spec(name)
    assert spec.name == name and spec.formula and spec.paper and type(get(name)).__doc__
    # the formula text is the function (as tests/test_formula.py checks for every entry)
    torch.testing.assert_close(get(spec.formula)(GRID), get(name)(GRID), atol=1e-9, rtol=1e-9)
    x = torch.tensor([-400.0, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 400.0], requires_grad=True)
    y = get(name)(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    smooth = torch.tensor([-5.3, -2.3, -0.3, 0.7, 2.7, 5.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(get(name), (smooth,))
    assert activations.measure(name)["gated"] is False


def test_new_entries_at_hand_values():
    assert get("gelu_10")(torch.tensor([12.0])).item() == 10.0
    assert get("hard_swish")(torch.tensor([1.0])).item() == pytest.approx(4 / 6)
    assert get("laplace")(torch.tensor([0.707107])).item() == pytest.approx(0.5)
    assert get("sqrt_softplus")(torch.tensor([0.0])).item() == pytest.approx(math.sqrt(math.log(2)))
    assert get("prelu")(torch.tensor([-2.0])).item() == -0.5
    xielu = get("xielu")(torch.tensor([2.0, -1.0], dtype=torch.float64))
    assert xielu.tolist() == pytest.approx([0.8 * 4 + 1.0, 0.8 * (math.exp(-1) - 1 + 1) - 0.5])


@pytest.mark.parametrize("entry", sorted({get_spec(k).name for k in ACT2FN} - {"xielu"}))
def test_each_entry_exports_under_an_act2fn_name_that_comes_back(entry):
    key = hf_act_name(entry)
    assert key in ACT2FN and actlab_name(key) == entry


def test_export_names_and_refusals():
    assert hf_act_name("gelu_tanh") == "gelu_new" and hf_act_name("identity") == "linear"
    assert hf_act_name("x * sigmoid(x)") == "silu"  # a formula of the same function
    assert hf_act_name("max(x, 0)") == "relu"
    with pytest.raises(ActlabError, match="no equivalent in transformers' ACT2FN"):
        hf_act_name("elu")
    with pytest.raises(ActlabError, match="no equivalent"):
        hf_act_name("x * sigmoid(1.7 * x)")  # close to quick_gelu's 1.702, not the same
    with pytest.raises(ActlabError, match="is gated.*rotary"):
        hf_act_name("swiglu")
    with pytest.raises(ActlabError, match="bfloat16"):
        hf_act_name("xielu")
    with pytest.raises(ActlabError, match="not an activation name"):
        actlab_name("swiglu")

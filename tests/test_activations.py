"""The activation registry: every entry against a reference, gradients, lookups and measured properties."""
import json
import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from actlab.activations import (
    ActivationError,
    GatedActivation,
    Swish,
    derivative,
    get,
    get_spec,
    measure,
    names,
    register,
)
from actlab.activations import registry
from actlab.errors import ActlabError

PLAIN = names(gated=False)
GATED = names(gated=True)


def _sigmoid64(x):
    return 1 / (1 + torch.exp(-x))


# torch.nn.functional where it has the op; otherwise the formula written out.
REFERENCE = {
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": F.hardsigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "relu6": F.relu6,
    "relu2": lambda x: torch.where(x > 0, x * x, torch.zeros_like(x)),
    "leaky_relu2": lambda x: F.leaky_relu(x, 0.5).square(),
    "elu": F.elu,
    "selu": F.selu,
    "gelu": lambda x: F.gelu(x, approximate="none"),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "quick_gelu": lambda x: x * _sigmoid64(1.702 * x),
    "silu": F.silu,
    "mish": F.mish,
    "softplus": F.softplus,
    "identity": lambda x: x,
    "sigmoid_centered": lambda x: _sigmoid64(x) - 0.5,
    # the ACT2FN functions actlab had no entry for (activations/hf_names.py)
    "gelu_10": lambda x: torch.clamp(F.gelu(x), -10, 10),
    "hard_swish": F.hardswish,
    "laplace": lambda x: 0.5 * (1 + torch.special.erf((x - 0.707107) / (0.282095 * math.sqrt(2)))),
    "sqrt_softplus": lambda x: torch.sqrt(F.softplus(x)),
    "prelu": lambda x: F.leaky_relu(x, 0.25),
    "xielu": lambda x: torch.where(x > 0, 0.8 * x * x + 0.5 * x, 0.8 * torch.expm1(x) - 0.3 * x),
}

# The gated entries written out: split the last dimension by hand, gate the first half.
GATE_REFERENCE = {
    "glu": _sigmoid64,
    "bilinear": lambda a: a,
    "reglu": lambda a: torch.where(a > 0, a, torch.zeros_like(a)),
    "geglu": lambda a: 0.5 * a * (1 + torch.special.erf(a / math.sqrt(2))),
    "swiglu": lambda a: a * _sigmoid64(a),
}

# Away from every kink (0 for relu-likes, +-3 for hard_sigmoid, 6 for relu6), so finite
# differences are valid; 7.3 reaches the flat part of relu6 and hard_sigmoid.
SMOOTH_POINTS = [-5.3, -4.3, -3.3, -2.3, -1.3, -0.3, 0.7, 1.7, 2.7, 3.7, 4.7, 5.7, 7.3, -7.7]


def test_the_entries_the_design_lists():
    assert set(PLAIN) == set(REFERENCE)
    assert GATED == ["glu", "bilinear", "reglu", "geglu", "swiglu"]
    assert "swish" not in names()  # an alias, not a second entry


@pytest.mark.parametrize("name", PLAIN)
def test_plain_matches_reference(name):
    x = torch.linspace(-12, 12, 2001, dtype=torch.float64)
    torch.testing.assert_close(get(name)(x), REFERENCE[name](x))
    x32 = x.float()
    torch.testing.assert_close(get(name)(x32), REFERENCE[name](x).float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.702, 4.0])
def test_swish_beta(beta):
    x = torch.linspace(-10, 10, 501, dtype=torch.float64)
    torch.testing.assert_close(Swish(beta)(x), x * _sigmoid64(beta * x))
    assert get("swish").beta == 1.0 and isinstance(get("silu"), Swish)


@pytest.mark.parametrize("name", GATED)
def test_gated_matches_formula(name):
    x = torch.randn(3, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    gate, up = x[..., :4], x[..., 4:]
    out = get(name)(x)
    assert out.shape == (3, 5, 4)
    torch.testing.assert_close(out, GATE_REFERENCE[name](gate) * up)


def test_glu_is_torch_glu_with_halves_swapped():
    # F.glu gates the *second* half; Shazeer's sigmoid(xW) * xV gates the first.
    x = torch.randn(4, 6, dtype=torch.float64)
    gate, up = x.chunk(2, dim=-1)
    torch.testing.assert_close(get("glu")(x), F.glu(torch.cat([up, gate], dim=-1), dim=-1))


@pytest.mark.parametrize("name", GATED)
def test_gated_metadata_agrees_with_module(name):
    spec, module = get_spec(name), get(name)
    assert isinstance(module, GatedActivation)
    assert spec.gated and spec.fn is None and spec.gate in PLAIN
    assert module.gate == spec.gate
    assert type(module.gate_fn) is type(get(spec.gate))
    x = torch.randn(2, 10, dtype=torch.float64)
    torch.testing.assert_close(module(x), get(spec.gate)(x[:, :5]) * x[:, 5:])


def test_gated_rejects_odd_width():
    with pytest.raises(ValueError, match="even last dimension"):
        get("swiglu")(torch.randn(2, 5))


@pytest.mark.parametrize("name", PLAIN + GATED)
def test_gradcheck_float64(name):
    x = torch.tensor(SMOOTH_POINTS, dtype=torch.float64)
    if name in GATED:
        x = x.reshape(2, 7)[:, :6]  # last dim 6: gate (3) and value (3) halves
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(get(name), (x,))


@pytest.mark.parametrize("name", PLAIN + GATED)
def test_finite_at_extremes_float32(name):
    if name in GATED:
        # every sign combination of gate and value at +-400, plus moderate values
        x = torch.tensor([[-400.0, 400.0, -400.0, 400.0, -400.0, 400.0, -400.0, 400.0],
                          [-400.0, -400.0, 400.0, 400.0, 3.0, -3.0, 50.0, -50.0]]).t().contiguous()
    else:
        x = torch.tensor([-400.0, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 400.0])
    x.requires_grad_(True)
    y = get(name)(x)
    y.sum().backward()
    assert torch.isfinite(y).all(), y
    assert torch.isfinite(x.grad).all(), x.grad


def test_erf_gelu_differs_from_tanh_gelu():
    x = torch.linspace(-6, 6, 10001, dtype=torch.float64)
    diff = (get("gelu")(x) - get("gelu_tanh")(x)).abs().max().item()
    assert 1e-4 < diff < 1e-2


def test_get_returns_a_fresh_module_each_time():
    a, b = get("gelu"), get("GELU")
    assert a is not b
    fired = []
    handle = a.register_forward_hook(lambda mod, inp, out: fired.append(mod))
    b(torch.randn(3))
    assert fired == []
    a(torch.randn(3))
    assert fired == [a]
    handle.remove()
    assert get("swiglu").gate_fn is not get("swiglu").gate_fn


def test_lookup_is_case_insensitive_and_knows_aliases():
    assert get_spec(" GeLU ") is get_spec("gelu")
    assert get_spec("swish") is get_spec("silu")


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ActivationError, match=r"unknown activation 'gleu'; did you mean: ") as info:
        get("gleu")
    message = str(info.value)
    assert "gelu" in message and "glu" in message and "\n" not in message
    assert isinstance(info.value, ActlabError) and isinstance(info.value, ValueError)
    with pytest.raises(ActivationError, match="swiglu"):
        get_spec("swigul")


def test_duplicate_registration_raises_and_changes_nothing():
    before = names()
    with pytest.raises(ValueError, match="already registered"):
        register("relu")(nn.ReLU)
    with pytest.raises(ValueError, match="already registered"):
        register("ReLU")(nn.ReLU)
    with pytest.raises(ValueError, match="already registered"):
        register("brand_new", aliases=("swish",))(nn.ReLU)
    assert names() == before and "brand_new" not in names()


def test_register_your_own(monkeypatch):
    # Work on copies so the new entries vanish after this test.
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))

    @register("xtanh", formula="x * tanh(x)", paper="test", aliases=("x_tanh",))
    class XTanh(nn.Module):
        def forward(self, x):
            return x * torch.tanh(x)

    @register("factory_made")
    def make():
        return nn.Softsign()

    assert names()[-2:] == ["xtanh", "factory_made"]
    assert isinstance(get("X_TANH"), XTanh) and get("xtanh") is not get("xtanh")
    assert isinstance(get("factory_made"), nn.Softsign)
    x = torch.tensor([0.5, -2.0])
    torch.testing.assert_close(derivative("xtanh", x), torch.tanh(x) + x / torch.cosh(x) ** 2)
    with pytest.raises(ValueError, match="needs gate="):
        register("gated_without_gate", gated=True)


@pytest.mark.parametrize("name", PLAIN + GATED)
def test_every_entry_documents_itself(name):
    spec = get_spec(name)
    assert spec.name == name and spec.formula and spec.paper
    assert type(get(name)).__doc__


def test_derivative():
    x = torch.linspace(-8, 8, 101)
    s = torch.sigmoid(x)
    torch.testing.assert_close(derivative("sigmoid", x), s * (1 - s))
    assert derivative("sigmoid", x).dtype == torch.float32
    torch.testing.assert_close(derivative("swiglu", x), derivative("silu", x))  # the gate's slope
    torch.testing.assert_close(derivative("relu", x), (x > 0).float())
    assert not x.requires_grad


# --- measured properties -------------------------------------------------------------------


def test_measure_sigmoid_analytically():
    m = measure("sigmoid")
    assert m["max_abs_grad"] == pytest.approx(0.25, abs=1e-9)
    assert m["range_min"] == pytest.approx(1 / (1 + math.exp(10)), rel=1e-6)
    assert m["range_max"] == pytest.approx(1 / (1 + math.exp(-10)), rel=1e-6)
    assert m["mean"] == pytest.approx(0.5, abs=1e-9)
    assert m["monotone"] and m["smooth"] and not m["zero_centred"] and not m["gated"]
    # sigmoid' = s(1 - s) < 0.01 exactly when |x| > x*, with s(x*) = (1 + sqrt(1 - 0.04)) / 2.
    s = (1 + math.sqrt(1 - 4 * 0.01)) / 2
    x_star = math.log(s / (1 - s))  # about 4.595
    analytic = math.erfc(x_star / 3 / math.sqrt(2))  # P(|x| > x*) for x ~ N(0, 3^2)
    assert m["saturation"] == pytest.approx(analytic, abs=1e-3)


def test_measure_centering_ablation():
    centred, plain = measure("sigmoid_centered"), measure("sigmoid")
    assert centred["mean"] == pytest.approx(0.0, abs=1e-9) and centred["zero_centred"]
    assert not plain["zero_centred"]
    # Same shape: only the mean moves.
    for key in ("std", "max_abs_grad", "saturation", "monotone", "smooth"):
        assert centred[key] == pytest.approx(plain[key])


def test_measure_shapes():
    assert measure("tanh")["monotone"] and measure("tanh")["smooth"]
    assert not measure("relu")["smooth"] and not measure("selu")["smooth"]
    assert measure("relu2")["smooth"]  # C1: its slope 2*relu(x) is continuous
    assert not measure("gelu")["monotone"] and measure("gelu")["smooth"]
    assert measure("identity")["saturation"] == 0.0
    assert measure("relu")["saturation"] == pytest.approx(0.5, abs=1e-3)  # the dead half
    assert measure("selu")["mean"] == pytest.approx(0.0, abs=1e-3)  # self-normalising: mean 0,
    assert measure("selu")["std"] == pytest.approx(1.0, abs=1e-3)  # variance 1 at N(0, 1)
    assert measure("relu")["mean"] == pytest.approx(1 / math.sqrt(2 * math.pi), abs=1e-6)


def test_measure_gated_describes_its_gate():
    m = measure("glu")
    assert m["gated"] and m["gate"] == "sigmoid"
    assert {k: v for k, v in m.items() if k not in ("gated", "gate")} == {
        k: v for k, v in measure("sigmoid").items() if k not in ("gated", "gate")
    }


def test_measure_a_formula_and_reject_a_non_finite_one():
    assert measure("x * sigmoid(x)")["mean"] == pytest.approx(measure("silu")["mean"], abs=1e-9)
    with pytest.raises(ActivationError, match="not finite"):
        measure("log(x)")


def test_measure_everything_is_fast():
    measure("tanh")  # first autograd call pays one-time set-up
    start = time.perf_counter()
    results = {name: measure(name) for name in names()}
    assert time.perf_counter() - start < 2.0
    for result in results.values():
        assert all(isinstance(v, (bool, float, str, type(None))) for v in result.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", PLAIN + GATED)
def test_same_result_on_cuda(name):
    x = torch.randn(4, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 4
    x_gpu = x.cuda().requires_grad_(True)
    y = get(name).cuda()(x_gpu)
    y.sum().backward()
    assert y.device == x_gpu.device
    x.requires_grad_(True)
    get(name)(x).sum().backward()
    torch.testing.assert_close(y.cpu(), get(name)(x.detach()))
    torch.testing.assert_close(x_gpu.grad.cpu(), x.grad)


def test_sigmoid_centered_keeps_tiny_inputs_in_float32():
    # sigmoid(x) - 0.5 rounds to exactly 0 for |x| < ~1e-8 in float32; the centred ablation
    # must keep the sigmoid's slope of 1/4 there, or deep stacks go silent.
    x = torch.tensor([1e-9, -1e-7, 1e-6], dtype=torch.float32)
    torch.testing.assert_close(get("sigmoid_centered")(x), x / 4, rtol=1e-6, atol=0)


# --- leaky_relu2: the speedrun records' LeakyReLU(0.5)^2 ------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_leaky_relu2_at_extreme_inputs_forward_and_backward(dtype):
    x = torch.tensor([-300.0, -7.5, -1e-3, 0.0, 1e-3, 7.5, 300.0], dtype=dtype, requires_grad=True)
    y = get("leaky_relu2")(x)
    y.sum().backward()
    ref_x = x.detach().clone().requires_grad_(True)
    ref = F.leaky_relu(ref_x, 0.5).square()
    ref.sum().backward()
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=0, atol=0)
    # By hand: (x / 2)^2 = 22500 and slope x / 2 = -150 at -300; x^2 and 2x at +300.
    assert y[0].item() == 22500.0 and y[-1].item() == 90000.0
    assert x.grad[0].item() == -150.0 and x.grad[-1].item() == 600.0 and x.grad[3].item() == 0.0


def test_leaky_relu2_gradcheck_float64_on_both_sides():
    x = torch.tensor([-300.0, -5.3, -0.3, 0.7, 4.7, 300.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(get("leaky_relu2"), (x,))
    assert torch.autograd.gradgradcheck(get("leaky_relu2"), (x,))


def test_leaky_relu2_formula_and_source():
    spec = get_spec("leaky_relu2")
    x = torch.linspace(-300, 300, 6001, dtype=torch.float64)
    torch.testing.assert_close(get_spec(spec.formula).fn(x), F.leaky_relu(x, 0.5).square())
    assert spec.paper.startswith("community recipe, no paper") and "parameter-golf" in spec.paper
    assert not spec.gated and PLAIN.index("leaky_relu2") == PLAIN.index("relu2") + 1


def test_leaky_relu2_measured_properties():
    m = measure("leaky_relu2")
    assert m["range_min"] == 0.0 and m["range_max"] == pytest.approx(100.0)  # f(10) = 10^2
    # x ~ N(0, 1): E f = E[x^2; x > 0] + E[x^2; x < 0] / 4 = 1/2 + 1/8; E f^2 = 3/2 + 3/32.
    assert m["mean"] == pytest.approx(0.625, abs=1e-6)
    assert m["std"] == pytest.approx(math.sqrt(1.5 + 3 / 32 - 0.625**2), abs=1e-6)
    assert m["max_abs_grad"] == pytest.approx(20.0)  # 2x at x = 10
    # |f'| < 0.01 on -0.02 < x < 0.005 only: about 0.025 * N(0, 3^2) density at 0.
    assert m["saturation"] == pytest.approx(0.025 / (3 * math.sqrt(2 * math.pi)), abs=3e-4)
    assert m["smooth"] and not m["monotone"] and not m["zero_centred"]
    assert measure("relu2")["saturation"] > 0.49  # relu2's flat half, which leaky_relu2 has not


def test_cli_acts_lists_leaky_relu2_with_its_properties(capsys):
    from actlab.cli import main

    assert main(["acts", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["leaky_relu2"] == {**measure("leaky_relu2"), "name": "leaky_relu2"}
    assert rows["leaky_relu2"]["mean"] == pytest.approx(0.625, abs=1e-6)
    assert main(["acts"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if "leaky_relu2" in row)
    assert "0 .. 100" in line and "0.625" in line

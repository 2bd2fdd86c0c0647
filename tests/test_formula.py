"""Activations given as a formula in x or as an import path: correct results, hostile text refused."""
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from actlab.activations import (
    ActivationError,
    FormulaActivation,
    derivative,
    get,
    get_spec,
    names,
    parse_formula,
)

X = torch.linspace(-8, 8, 1601, dtype=torch.float64)
LONG = "x" + " + x" * 124 + " +1"  # a valid formula, 500 characters long
assert len(LONG) == 500


def test_quick_gelu_formula_equals_the_entry():
    for x in (X, X.float()):
        torch.testing.assert_close(get("x * sigmoid(1.702 * x)")(x), get("quick_gelu")(x))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("max(x, 0)", lambda x: torch.relu(x)),
        ("max(0, x)", lambda x: torch.relu(x)),
        ("min(x, 1)", lambda x: torch.clamp(x, max=1)),
        ("min(x, sigmoid(x))", lambda x: torch.minimum(x, torch.sigmoid(x))),
        ("-x**2", lambda x: -(x**2)),  # ** binds tighter than unary minus, as in Python
        ("sqrt(abs(x))+1", lambda x: torch.sqrt(torch.abs(x)) + 1),
        ("x / (1 + exp(-x))", lambda x: F.silu(x)),
        ("2 ** x - 1", lambda x: 2**x - 1),
        ("x * sqrt(4) + +1", lambda x: 2 * x + 1),
        ("log(1 + exp(x)) - softplus(x) + erf(x) + tanh(x)",
         lambda x: torch.special.erf(x) + torch.tanh(x)),
        ("relu(x) * max(1, 2)", lambda x: 2 * torch.relu(x)),
        ("x", lambda x: x),
    ],
)
def test_formula_evaluates_like_torch(text, expected):
    torch.testing.assert_close(get(text)(X), expected(X))


def test_formula_spec_is_plain_normalised_and_fresh():
    spec = get_spec("x*sigmoid( x )")
    assert spec.name == spec.formula == "x * sigmoid(x)"
    assert not spec.gated and spec.gate is None
    a, b = spec.factory(), get("x*sigmoid(x)")
    assert isinstance(a, FormulaActivation) and a is not b


def test_formula_keeps_dtype_and_gradients():
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        assert get("0.5 * x + sigmoid(1)")(torch.ones(3, dtype=dtype)).dtype == dtype
    x = torch.tensor([-2.5, -0.5, 0.7, 3.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(get("x * tanh(softplus(x)) + min(x, 0) ** 2"), (x,))
    torch.testing.assert_close(derivative("x ** 3", x.detach()), 3 * x.detach() ** 2)


def test_formula_module_pickles():
    module = get("x * sigmoid(1.702 * x)")
    copy = pickle.loads(pickle.dumps(module))
    torch.testing.assert_close(copy(X), module(X))


@pytest.mark.parametrize("name", names(gated=False))
def test_registered_formulas_are_true(name):
    # Each plain entry's formula text, run through the parser, is the function the module computes.
    spec = get_spec(name)
    torch.testing.assert_close(get(spec.formula)(X), get(name)(X), atol=1e-9, rtol=1e-9)


HOSTILE = [
    "__import__('os')",
    "__import__('os').system('true')",
    "x.__class__",
    "x.sum()",
    "(lambda: 1)()",
    "y + 1",
    "x[0]",
    "open('f')",
    "'a'",
    "x if x else 1",
    "sigmoid(x, y=1)",
    "",
    "   ",
    LONG,
    "x // 2",
    "x % 2",
    "x @ x",
    "~x",
    "not x",
    "x < 1",
    "x and 1",
    "[x]",
    "{x: 1}",
    "True * x",
    "1j * x",
    "1e999 * x",
    "10 ** 400 * x",
    "sigmoid()",
    "max(x)",
    "sigmoid(x)(x)",
    "f'{x}'",
    "(x := 1)",
    "x; import os",
    "2",
    "pi * x",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_refused(text):
    with pytest.raises(ActivationError) as info:
        get_spec(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, says",
    [
        ("__import__('os')", "the function '__import__' is not allowed"),
        ("x.__class__", "attribute access is not allowed"),
        ("(lambda: 1)()", "calling anything but a named function is not allowed"),
        ("y + 1", "the name 'y' is not allowed"),
        ("x[0]", "indexing is not allowed"),
        ("'a'", "the constant 'a' is not allowed"),
        ("x if x else 1", "a conditional expression is not allowed"),
        ("sigmoid(x, y=1)", r"a keyword argument in sigmoid\(\) is not allowed"),
        ("max(x)", r"max\(\) takes 2 arguments, got 1"),
        ("1e999 * x", "non-finite"),
        ("2", "does not use x"),
        (LONG, "500 characters long; the limit is 200"),
    ],
)
def test_refusals_say_why(text, says):
    with pytest.raises(ActivationError, match=says):
        parse_formula(text)


def test_refused_text_never_runs(tmp_path):
    target = tmp_path / "written"
    with pytest.raises(ActivationError):
        get_spec(f"open({str(target)!r}, 'w')")
    with pytest.raises(ActivationError):
        get_spec(f"__import__('pathlib').Path({str(target)!r}).touch()")
    assert not target.exists()


# --- import paths ----------------------------------------------------------------------------


def test_import_path_to_a_function():
    spec = get_spec("torch.nn.functional:silu")
    assert spec.name == "torch.nn.functional:silu" and not spec.gated
    module = spec.factory()
    assert isinstance(module, nn.Module) and module is not spec.factory()
    torch.testing.assert_close(module(X), F.silu(X))
    torch.testing.assert_close(derivative(spec, X), derivative("silu", X))


def test_import_path_to_a_module_class_or_a_registered_entry():
    a, b = get("torch.nn:Tanh"), get("torch.nn:Tanh")
    assert isinstance(a, nn.Tanh) and a is not b
    # A registered class found by path keeps its registry metadata.
    assert get_spec("actlab.activations.gated:SwiGLU") is get_spec("swiglu")


@pytest.mark.parametrize(
    "path, says",
    [
        ("nonexistent.mod:f", "cannot import 'nonexistent.mod'"),
        ("torch:not_there", "has no attribute 'not_there'"),
        ("math:pi", "not a function or nn.Module"),
        ("torch.nn:Linear", "cannot build 'torch.nn:Linear' with no arguments"),
    ],
)
def test_bad_import_paths(path, says):
    with pytest.raises(ActivationError, match=says) as info:
        get_spec(path)
    assert "\n" not in str(info.value)


def test_dotted_name_without_colon_hints_at_the_import_syntax():
    with pytest.raises(ActivationError, match="package.module:function"):
        get_spec("torch.nn.functional.silu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_formula_on_cuda():
    text = "x * sigmoid(1.702 * x) + min(x, 0.5) - max(2, sqrt(abs(x))) + 2 ** x"
    out = get(text)(X.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), get(text)(X))

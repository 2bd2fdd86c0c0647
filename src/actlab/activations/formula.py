"""Activations written as a small formula in x, e.g. "x * sigmoid(1.702 * x)".

The text is parsed with Python's `ast` and every node is checked against a short allow-list before
it is turned into a tree of closures over torch ops. The text is never evaluated (no eval, exec
or bytecode), so a formula can only compute arithmetic on the tensor x.
"""
from __future__ import annotations

import ast
import math
import operator
import warnings
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from actlab.activations.probe import check_activation
from actlab.activations.spec import ActivationError, ActSpec

MAX_LENGTH = 200
# Models train in float32 (or bfloat16, whose range is float32's): a constant beyond this
# would become inf in the first forward pass.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)

Op = Callable[[Tensor], Tensor]

# Functions a formula may call: one argument each, except min and max which take two.
_UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "exp": torch.exp,
    "log": torch.log,
    "erf": torch.special.erf,
    "relu": torch.relu,
    "softplus": F.softplus,
    "abs": torch.abs,
    "sqrt": torch.sqrt,
}
_BINARY = ("min", "max")
# Python's operators, not torch.add & co: they accept a float on either side of a tensor.
_BINOPS: dict[type, Callable] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
ALLOWED_FUNCTIONS = tuple(_UNARY) + _BINARY

_HELP = "a formula may use x, numbers, + - * / ** and " + ", ".join(ALLOWED_FUNCTIONS)

# Plain words for the constructs people are most likely to try, so the error says what it saw.
_NODE_WORDS = {
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Lambda: "lambda",
    ast.IfExp: "a conditional expression",
    ast.Compare: "a comparison",
    ast.BoolOp: "and/or",
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.JoinedStr: "an f-string",
    ast.NamedExpr: "an assignment",
    ast.Starred: "unpacking",
}


def _reject(text: str, what: str) -> ActivationError:
    return ActivationError(f"formula {text!r}: {what} is not allowed; {_HELP}")


# A compiled node is either a float (it does not depend on x, so it was folded while compiling)
# or a function of x. Folding means every op left at run time has a tensor operand, so nothing
# allocates a constant tensor (a host-to-device copy on a GPU) on each forward pass.
Node = Union[float, Op]


def _fold(text: str, fn: Callable, *values: float) -> float:
    """Evaluate an x-free part once, with torch's float64 rules (inf, not OverflowError)."""
    result = fn(*(torch.tensor(v, dtype=torch.float64) for v in values))
    value = float(result)
    if not math.isfinite(value):
        raise _reject(text, "a part that evaluates to a non-finite number")
    if abs(value) > FLOAT32_MAX:
        raise _reject(text, f"a part that evaluates to {value:.3g}, beyond float32's range")
    return value


def _compile(node: ast.AST, text: str) -> Node:
    """Check one node (and its children) and compile it."""
    if isinstance(node, ast.Name):
        if node.id != "x":
            raise _reject(text, f"the name {node.id!r}")
        return lambda x: x

    if isinstance(node, ast.Constant):
        value = node.value
        # bool is an int subclass; True/False in a formula is almost surely a mistake.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _reject(text, f"the constant {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an int literal too large for a float
            number = math.inf
        if not math.isfinite(number):
            raise _reject(text, f"the non-finite number {value!r}")
        if abs(number) > FLOAT32_MAX:
            raise _reject(text, f"the number {number:.3g} (beyond float32's largest, "
                                f"{FLOAT32_MAX:.3g})")
        return number

    if isinstance(node, ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise _reject(text, f"the operator {type(node.op).__name__}")
        left, right = _compile(node.left, text), _compile(node.right, text)
        if isinstance(left, float) and isinstance(right, float):
            return _fold(text, op, left, right)
        lf, rf = _lift(left), _lift(right)
        return lambda x: op(lf(x), rf(x))

    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand, text)
        if isinstance(node.op, ast.UAdd):
            return operand
        if not isinstance(node.op, ast.USub):
            raise _reject(text, f"the operator {type(node.op).__name__}")
        if isinstance(operand, float):
            return -operand
        return lambda x: -operand(x)

    if isinstance(node, ast.Call):
        return _compile_call(node, text)

    raise _reject(text, _NODE_WORDS.get(type(node), type(node).__name__))


def _lift(node: Node) -> Op:
    if isinstance(node, float):
        return lambda x: node
    return node


def _compile_call(node: ast.Call, text: str) -> Node:
    if not isinstance(node.func, ast.Name):
        raise _reject(text, "calling anything but a named function")
    name = node.func.id
    if name not in _UNARY and name not in _BINARY:
        raise _reject(text, f"the function {name!r}")
    if node.keywords:
        raise _reject(text, f"a keyword argument in {name}()")
    want = 1 if name in _UNARY else 2
    if len(node.args) != want:
        raise ActivationError(
            f"formula {text!r}: {name}() takes {want} argument{'s' if want > 1 else ''}, "
            f"got {len(node.args)}"
        )
    args = [_compile(arg, text) for arg in node.args]

    if name in _UNARY:
        fn, (a,) = _UNARY[name], args
        if isinstance(a, float):
            return _fold(text, fn, a)
        return lambda x: fn(a(x))

    a, b = args
    pair = torch.minimum if name == "min" else torch.maximum
    if isinstance(a, float) and isinstance(b, float):
        return _fold(text, pair, a, b)
    if isinstance(a, float):  # min and max are symmetric: put the tensor first
        a, b = b, a
    if isinstance(b, float):
        # clamp takes a Python number, so no constant tensor is built per call.
        bound = b
        if name == "min":
            return lambda x: torch.clamp(a(x), max=bound)
        return lambda x: torch.clamp(a(x), min=bound)
    return lambda x: pair(a(x), b(x))


def parse_formula(text: str) -> tuple[str, Op]:
    """Check `text` and return (normalised text, function x -> f(x)); raise ActivationError."""
    if not isinstance(text, str):
        raise ActivationError(f"a formula must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise ActivationError("empty formula; " + _HELP)
    if len(text) > MAX_LENGTH:
        raise ActivationError(
            f"formula is {len(text)} characters long; the limit is {MAX_LENGTH}"
        )
    try:
        with warnings.catch_warnings():  # "2x" warns before it fails: the error says it all
            # SyntaxWarning, and DeprecationWarning for an invalid escape before Python 3.12
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError) as err:
        # ValueError: e.g. a null byte in the text.
        reason = getattr(err, "msg", None) or str(err)
        raise ActivationError(f"formula {text!r} is not valid: {reason}") from None
    except (RecursionError, MemoryError):  # the parser's own stack, on deeply nested text
        raise ActivationError(f"formula {text!r} is nested too deeply") from None
    try:
        fn = _compile(tree.body, text)
    except RecursionError:
        raise ActivationError(f"formula {text!r} is nested too deeply") from None
    if isinstance(fn, float):
        raise ActivationError(f"formula {text!r} does not use x")
    # ast.unparse gives one canonical spelling: "x*sigmoid( x )" -> "x * sigmoid(x)".
    return ast.unparse(tree), fn


class FormulaActivation(nn.Module):
    """An elementwise activation given by a checked formula in x."""

    def __init__(self, formula: str):
        super().__init__()
        self.formula, self._fn = parse_formula(formula)

    def forward(self, x: Tensor) -> Tensor:
        return self._fn(x)

    def extra_repr(self) -> str:
        return repr(self.formula)

    # The closure tree cannot be pickled; keep the text and rebuild it on load.
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_fn", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        _, self._fn = parse_formula(self.formula)


def formula_spec(text: str) -> ActSpec:
    """The registry entry for a formula: a plain activation named by its normalised text,
    refused unless it is finite on the probe (see probe.py): the allow-list alone accepts
    formulas float32 cannot hold, such as exp(exp(x)) or x ** 100."""
    normalised, fn = parse_formula(text)
    check_activation(fn, normalised)
    return ActSpec(
        name=normalised,
        factory=lambda: FormulaActivation(normalised),
        formula=normalised,
        fn=fn,
    )

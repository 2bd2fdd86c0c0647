"""Property-based fuzz of the formula parser: random text and grammar-built formulas mixed with
hostile fragments. Whatever the text, resolving it never executes anything (no eval, exec,
import or open is reached, no sentinel file appears), never raises anything but
ActivationError, never hangs, and what it accepts is finite on the probe."""
import ast
import builtins
import contextlib
import os
import subprocess
import sys
import tempfile
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actlab.activations import ActivationError, FormulaActivation, get_spec, names
from actlab.activations.formula import ALLOWED_FUNCTIONS
from actlab.activations.probe import DANGEROUS_MODULES, probe_input

SENTINEL = os.path.join(tempfile.gettempdir(), f"actlab-fuzz-sentinel-{os.getpid()}")


class Executed(BaseException):
    """Raised by a trapped builtin: a BaseException, so no `except Exception` can hide it."""


@contextlib.contextmanager
def nothing_may_run():
    """Within the block, eval, exec, open, os.system, subprocess.Popen, compile (to anything but
    a syntax tree) and __import__ (see guarded_import) record the call and raise Executed;
    yields the list of calls (empty if nothing ran)."""
    calls: list[str] = []

    def trap(name):
        def trapped(*args, **kwargs):
            calls.append(name)
            raise Executed(name)
        return trapped

    real_compile = builtins.compile

    def compile_to_ast_only(source, filename, mode, flags=0, *args, **kwargs):
        # ast.parse compiles with PyCF_ONLY_AST: a syntax tree, never code. Anything else traps.
        if not flags & ast.PyCF_ONLY_AST:
            trap("compile")()
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    real_import = builtins.__import__

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        # torch imports its own submodules lazily, and its C code re-imports `torch` from the
        # calling frame: both are torch's business. Any other import of a module that acts on
        # the machine, or of one not loaded yet (new code), traps.
        importer = (globals or {}).get("__name__") or ""
        if importer != "torch" and not importer.startswith("torch."):
            if (name.split(".")[0] in DANGEROUS_MODULES | {"pathlib"} or level
                    or name not in sys.modules):
                trap(f"__import__ {name}")()
        return real_import(name, globals, locals, fromlist, level)

    with contextlib.ExitStack() as stack:
        for name in ("eval", "exec", "open", "breakpoint"):
            stack.enter_context(mock.patch.object(builtins, name, trap(name)))
        stack.enter_context(mock.patch.object(builtins, "__import__", guarded_import))
        stack.enter_context(mock.patch.object(builtins, "compile", compile_to_ast_only))
        stack.enter_context(mock.patch.object(os, "system", trap("os.system")))
        stack.enter_context(mock.patch.object(subprocess, "Popen", trap("subprocess.Popen")))
        yield calls


HOSTILE = [
    "__import__('os')",
    f"__import__('os').system('touch {SENTINEL}')",
    f"__import__('pathlib').Path({SENTINEL!r}).touch()",
    f"open({SENTINEL!r}, 'w')",
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "(lambda: 1)()",
    "lambda x: x",
    "x.__class__",
    "x.sum()",
    "eval('1')",
    "exec('import os')",
    "compile('1', 'f', 'eval')",
    "globals()",
    "getattr(x, 'sum')()",
    "breakpoint()",
    "[x for x in ()]",
    "{x: 1}",
    "x if x else 1",
    "(x := 1)",
    "f'{x}'",
    "b'x'",
    "...",
    "None",
    "True",
    "1j",
    "1e999",
    "10 ** 400",
    "9" * 60,
    "x[0]",
    "*x",
    "x; import os",
    "import os",
    "x @ x",
    "x // 0",
    "~x",
    "not x",
    "x < 1",
    "x and 1",
    "\x00",
    "x\nimport os",
]
NUMBERS = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e39", "-1e39", "3.4e38", "1e38", "1e-45", "1e308", "0", "0.0", "2",
                     "10 ** 39", "2 ** 2 ** 2 ** 2 ** 2", "1 / 0", "0 ** -1"]),
)
LEAVES = st.one_of(st.just("x"), NUMBERS, st.sampled_from(HOSTILE))
OTHER_NAMES = ["__import__", "eval", "exec", "open", "getattr", "globals", "print", "y", "pi",
               "torch", "os", "type", "vars"]


def _extend(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/", "**", "//", "%", "@", "<", "and",
                                             "|", "^", "<<", "if x else", "."]), children)
        .map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "+", "~", "not "]), children).map("".join),
        st.tuples(st.sampled_from(list(ALLOWED_FUNCTIONS) + OTHER_NAMES), children)
        .map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(["min", "max"]), children, children)
        .map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(children, st.sampled_from(["__class__", "real", "sum()", "__dict__", "T"]))
        .map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(st.integers(1, 120), children).map(lambda t: "(" * t[0] + t[1] + ")" * t[0]),
        st.tuples(st.integers(1, 199), children).map(lambda t: "-" * t[0] + t[1]),
        st.tuples(children, st.integers(1, 60)).map(lambda t: " ** ".join([t[0]] * t[1])),
    )


FORMULAS = st.recursive(LEAVES, _extend, max_leaves=12)
TEXT = st.one_of(
    st.text(max_size=250),
    st.text(alphabet="x()+-*/.,0123456789e_ abcdefghijklmnopqrstuvwxyz'\"[]{}:;=<>!@#\\\n\t\x00",
            max_size=250),
    FORMULAS,
)


def _check(text: str) -> None:
    with nothing_may_run() as calls:
        try:
            spec = get_spec(text)
        except ActivationError as err:
            spec, message = None, str(err)
    assert calls == [], f"{text!r} reached {calls}"
    assert not os.path.exists(SENTINEL), f"{text!r} wrote the sentinel"
    if spec is None:
        assert message and "\n" not in message
        return
    if spec.name in names():  # a registered name (the fuzz finds them): tested elsewhere
        return
    x = probe_input()
    y = spec.fn(x)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all(), f"{text!r} was accepted but is not finite on the probe"
    torch.testing.assert_close(FormulaActivation(spec.name)(x), y)


# First calls pay one-time set-up costs (autograd, torch.testing's imports): keep them out of
# the deadline.
_check("x * sigmoid(1.5 * x) + 0.25")

FAST = settings(max_examples=200, deadline=500, database=None,
                suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=3000, deadline=500, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(TEXT)
def test_fuzzed_text_never_runs_and_fails_only_as_activation_error(text):
    _check(text)


@pytest.mark.slow
@SLOW
@given(TEXT)
def test_fuzzed_text_at_length(text):
    _check(text)


@pytest.mark.parametrize("text", HOSTILE)
def test_each_hostile_fragment_is_refused_without_running(text):
    with nothing_may_run() as calls:
        with pytest.raises(ActivationError):
            get_spec(text)
    assert calls == [] and not os.path.exists(SENTINEL)


def test_the_trap_does_catch_what_would_run():
    # the trap must be able to fail: an import or a compile to code inside it is seen and stopped
    with nothing_may_run() as calls:
        with pytest.raises(Executed):
            __import__("os")
        with pytest.raises(Executed):
            __import__("actlab_no_such_module")
        with pytest.raises(Executed):
            compile("1", "f", "eval")
        assert isinstance(ast.parse("x + 1", mode="eval"), ast.Expression)
    assert calls == ["__import__ os", "__import__ actlab_no_such_module", "compile"]

"""Checks an activation from outside (an import path or a formula) on a small probe tensor
when it is named, so that a name which cannot train is refused in one line before any run
rather than crashing, or writing NaN, at the first forward pass.

An import path runs code. Before anything from one is called, objects that belong to modules
whose functions act on the process or the machine (os, sys, subprocess, shutil, builtins,
importlib, pickle, socket and their relatives) are refused, so `os:system` or `builtins:eval`
is never called, not even on a tensor.
"""
from __future__ import annotations

from types import ModuleType
from typing import Callable

import torch
from torch import Tensor

from actlab.activations.spec import ActivationError

PROBE_TEXT = "torch.linspace(-6, 6, 64) in float32, shape (2, 32)"

# Top-level modules whose callables act on the process, files, network or interpreter. An
# import path into them, or to an object defined by them (a user module can re-export
# os.system), is refused before anything is called.
DANGEROUS_MODULES = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "_posixsubprocess", "shutil", "builtins",
    "importlib", "pickle", "_pickle", "socket", "_socket", "io", "_io", "ctypes", "_ctypes",
    "multiprocessing", "runpy", "pty", "signal", "_signal", "_thread", "threading", "marshal",
    "shelve", "tempfile", "webbrowser", "code", "codeop", "pdb", "bdb", "gc", "atexit",
    "faulthandler", "resource", "fcntl", "mmap", "select", "selectors", "ssl", "http",
    "urllib", "ftplib", "smtplib", "asyncio", "concurrent", "zipimport", "pkgutil", "site",
})
# Modules inside otherwise harmless packages that load, download or execute things.
DANGEROUS_PREFIXES = ("torch.hub", "torch.serialization", "torch.package", "torch.utils.cpp_extension")
# Builtins that evaluate code or reach the interpreter, refused by identity wherever they are
# re-exported from.
_DANGEROUS_BUILTINS = ("eval", "exec", "compile", "open", "__import__", "input", "breakpoint",
                       "exit", "quit", "getattr", "setattr", "delattr", "globals", "locals",
                       "vars", "help", "memoryview")


def _dangerous_ids() -> frozenset[int]:
    import builtins

    return frozenset(id(getattr(builtins, n)) for n in _DANGEROUS_BUILTINS if hasattr(builtins, n))


_DANGEROUS_IDS = _dangerous_ids()


def dangerous_module(name: str | None) -> bool:
    """Whether a module name is one whose callables an activation must never be."""
    if not name:
        return False
    return name.split(".")[0] in DANGEROUS_MODULES or any(
        name == p or name.startswith(p + ".") for p in DANGEROUS_PREFIXES
    )


def _refuse(path: str, owner: str) -> ActivationError:
    return ActivationError(
        f"activation {path!r} comes from the module {owner!r}, whose functions act on the "
        "process or the machine; an activation must be a tensor -> tensor function"
    )


def check_module(module_name: str, path: str) -> None:
    """Refuse an import path into a dangerous module before the module is even imported."""
    if dangerous_module(module_name):
        raise _refuse(path, module_name)


def check_safe(obj: object, path: str) -> None:
    """Refuse an object from an import path that belongs to a dangerous module (see above)."""
    if id(obj) in _DANGEROUS_IDS:
        raise ActivationError(f"activation {path!r} is a Python builtin that runs code; refused")
    owners = [getattr(obj, "__module__", None)]
    self_obj = getattr(obj, "__self__", None)  # a bound method: whose method is it?
    if self_obj is not None:
        owners.append(self_obj.__name__ if isinstance(self_obj, ModuleType)
                      else type(self_obj).__module__)
    if isinstance(obj, ModuleType):  # a module object itself
        owners.append(obj.__name__)
    for owner in owners:
        if isinstance(owner, str) and dangerous_module(owner):
            raise _refuse(path, owner)


def probe_input(requires_grad: bool = False) -> Tensor:
    """The probe: 64 evenly spaced float32 values on [-6, 6] (0 is not among them)."""
    x = torch.linspace(-6, 6, 64, dtype=torch.float32).reshape(2, 32)
    return x.requires_grad_(requires_grad)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"an object of type {type(value).__name__}"


def _bad_values(t: Tensor) -> str:
    kinds = [k for k, m in (("nan", torch.isnan(t)), ("inf", torch.isinf(t))) if bool(m.any())]
    return " and ".join(kinds)


def check_activation(fn: Callable[[Tensor], Tensor], label: str) -> None:
    """Call `fn` on the probe (and backward through it); raise ActivationError unless it returns
    a finite floating tensor of the probe's shape and dtype, leaves its input unchanged and
    passes a finite gradient back. `label` names the activation in the message."""
    where = f"activation {label!r}: on the probe ({PROBE_TEXT})"
    x = probe_input()
    before = x.clone()
    try:
        with torch.no_grad():
            y = fn(x)
    except Exception as err:  # the user's code failed: one line saying how
        raise ActivationError(f"{where} it raised {_first_line(err)}") from None
    if not isinstance(y, Tensor):
        raise ActivationError(f"{where} it returned {_describe(y)}, not a tensor")
    if y.shape != x.shape or y.dtype != x.dtype:
        raise ActivationError(
            f"{where} it returned {_describe(y)}; an activation must return a tensor of the "
            f"input's shape and dtype ({x.dtype}, {tuple(x.shape)})"
        )
    if not torch.equal(x, before):
        raise ActivationError(f"{where} it changed its input in place; return a new tensor instead")
    bad = _bad_values(y)
    if bad:
        raise ActivationError(f"{where} it returns values that are not finite ({bad})")

    xg = probe_input(requires_grad=True)
    try:
        with torch.enable_grad():
            out = fn(xg)
            if not (isinstance(out, Tensor) and out.requires_grad):
                raise ActivationError(
                    f"{where} its output does not depend on x through autograd, so no gradient "
                    "can flow back through it"
                )
            out.sum().backward()
    except ActivationError:
        raise
    except Exception as err:
        raise ActivationError(f"{where} the backward pass raised {_first_line(err)}") from None
    grad = xg.grad
    if grad is None:
        raise ActivationError(f"{where} no gradient reached its input")
    bad = _bad_values(grad)
    if bad:
        raise ActivationError(f"{where} its gradient is not finite ({bad})")

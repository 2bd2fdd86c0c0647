"""The activation registry: names -> ActSpec, plus lookup of formulas and import paths.

A config stores its activation as one string; `get_spec` turns that string into a spec:
  "gelu"                    a registered name or alias (case-insensitive),
  "mypkg.acts:my_act"       an import path to a tensor -> tensor callable or an nn.Module subclass,
  "x * sigmoid(1.702 * x)"  a formula in x (see formula.py).

A formula or import path is checked when it is named: it is called once on a small probe
tensor (probe.py) and refused unless it returns a finite tensor of the probe's shape and dtype
with a finite gradient. An import path runs code, so `get_spec(..., trust_code=False)` (what
loading a file asks for) refuses one instead of importing it.
"""
from __future__ import annotations

import copy
import difflib
import importlib
import re
from typing import Callable, Iterable, TypeVar

from torch import Tensor, nn

from actlab.activations.formula import MAX_LENGTH, formula_spec
from actlab.activations.probe import check_activation, check_module, check_safe
from actlab.activations.spec import ActivationError, ActSpec

# Registration order is kept: it is the order `actlab acts` and the reports list entries in.
_SPECS: dict[str, ActSpec] = {}
_ALIASES: dict[str, str] = {}

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_WORD = re.compile(r"[A-Za-z_][\w.]*")
# Formulas are pure functions of their text, so a checked one is kept (bounded, oldest dropped)
# and naming it again costs neither a parse nor a probe.
_FORMULAS: dict[str, ActSpec] = {}
_FORMULA_CACHE = 256

T = TypeVar("T", bound=Callable[[], nn.Module])


def _module_fn(factory: Callable[[], nn.Module]) -> Callable[[Tensor], Tensor]:
    """f(x) for a plain entry: runs a throwaway module, so no instance is ever shared."""
    return lambda x: factory()(x)


def _check_new_keys(name: str, keys: list[str]) -> None:
    """ValueError unless every key is a valid, untaken name, listed once."""
    for key in keys:
        if not _NAME.fullmatch(key):
            raise ValueError(f"activation name {key!r} must match {_NAME.pattern}")
        if key in _SPECS or key in _ALIASES:
            raise ValueError(f"activation {key!r} is already registered")
    if len(set(keys)) != len(keys):
        raise ValueError(f"activation {name!r} lists the same alias twice")


def register(
    name: str,
    *,
    gated: bool = False,
    gate: str | None = None,
    formula: str = "",
    paper: str = "",
    aliases: Iterable[str] = (),
) -> Callable[[T], T]:
    """Decorator: register an nn.Module class (or a zero-argument factory) under `name`.

    The class must build with no arguments. Gated entries take a last dimension of 2h, return h,
    and name in `gate` the registered plain function applied to the gate half.
    A name or alias that is already taken raises ValueError.
    """
    keys = [name.lower(), *(a.lower() for a in aliases)]
    _check_new_keys(name, keys)
    if gated and gate is None:
        raise ValueError(f"gated activation {name!r} needs gate= (the plain function it applies)")
    if not gated and gate is not None:
        raise ValueError(f"plain activation {name!r} cannot have a gate")

    def decorator(factory: T) -> T:
        spec = ActSpec(
            name=keys[0],
            factory=factory,
            gated=gated,
            gate=gate,
            formula=formula,
            paper=paper,
            fn=None if gated else _module_fn(factory),
        )
        _SPECS[spec.name] = spec
        for alias in keys[1:]:
            _ALIASES[alias] = spec.name
        return factory

    return decorator


def alias(name: str, *aliases: str) -> None:
    """Give the registered entry `name` more names, for entries registered elsewhere (the
    Hugging Face names of hf_names.py). The same checks as register's `aliases`."""
    target = name.lower()
    if target not in _SPECS:
        raise ValueError(f"cannot alias {name!r}: no such registered entry")
    keys = [a.lower() for a in aliases]
    _check_new_keys(name, keys)
    for key in keys:
        _ALIASES[key] = target


def aliases_of(name: str) -> list[str]:
    """The aliases of the registered entry `name`, in the order they were given."""
    return [a for a, target in _ALIASES.items() if target == name.lower()]


def names(gated: bool | None = None) -> list[str]:
    """Registered names (not aliases) in registration order; `gated` filters by kind."""
    return [n for n, s in _SPECS.items() if gated is None or s.gated == gated]


def get(name: str) -> nn.Module:
    """A fresh module for `name` (a new instance on every call, so hooks are never shared)."""
    return get_spec(name).factory()


def is_import_path(name: object) -> bool:
    """Whether `name` would be resolved as an import path 'pkg.mod:attr' (which runs code)."""
    return isinstance(name, str) and bool(_IMPORT_PATH.fullmatch(name.strip()))


def trust_message(text: str) -> str:
    """Why an import path is refused where code is not trusted (a file rather than the user)."""
    return f"activation {text!r} is an import path, which runs code; pass --trust-code to allow it"


def get_spec(name: str | ActSpec, *, trust_code: bool = True) -> ActSpec:
    """Resolve a registered name or alias, an import path 'pkg.mod:fn', or a formula in x.

    trust_code=False refuses an import path without importing anything: a name read from a
    file (a --config file, a claims file, a stored run) must not run code the user did not
    ask for on the command line.
    """
    if isinstance(name, ActSpec):
        return name
    if not isinstance(name, str):
        raise ActivationError(f"an activation is named by a string, got {type(name).__name__}")
    text = name.strip()
    if not text:
        raise ActivationError("empty activation name; known: " + ", ".join(names()))
    key = text.lower()
    if key in _SPECS:
        return _SPECS[key]
    if key in _ALIASES:
        return _SPECS[_ALIASES[key]]
    if len(text) > MAX_LENGTH:
        raise ActivationError(
            f"activation text is {len(text)} characters long; the limit is {MAX_LENGTH}"
        )
    if _IMPORT_PATH.fullmatch(text):
        if not trust_code:
            raise ActivationError(trust_message(text))
        return _import_spec(text)
    # A lone word is a mistyped name, not a formula; but "x" and "x.attr" go to the formula
    # checker, which says what is wrong with them.
    if _WORD.fullmatch(text) and text.split(".")[0] != "x":
        raise ActivationError(_unknown_message(text))
    return _formula(text)


def _formula(text: str) -> ActSpec:
    """A formula's spec, parsed and probed once per text (formula_spec)."""
    if text in _FORMULAS:
        return _FORMULAS[text]
    spec = formula_spec(text)
    if len(_FORMULAS) >= _FORMULA_CACHE:
        _FORMULAS.pop(next(iter(_FORMULAS)))
    _FORMULAS[text] = spec
    return spec


def _unknown_message(text: str) -> str:
    key = text.lower()
    candidates = names() + list(_ALIASES)
    # The three highest similarity ratios, rather than get_close_matches' cutoff, so there is
    # always a suggestion; ties keep registration order.
    ranked = sorted(candidates, key=lambda c: -difflib.SequenceMatcher(None, key, c).ratio())
    message = f"unknown activation {text!r}; did you mean: {', '.join(ranked[:3])}?"
    if "." in text:
        message += " (an import path is written 'package.module:function')"
    return message


def _import_spec(path: str) -> ActSpec:
    """An ActSpec for 'pkg.mod:attr', where attr is a function, a module class or instance."""
    module_name, attr_path = path.split(":")
    check_module(module_name, path)  # before it is even imported
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ActivationError(f"cannot import {module_name!r} for activation {path!r}: {err}") from None
    except Exception as err:  # the user's module raised while importing: still one line
        raise ActivationError(
            f"importing {module_name!r} for activation {path!r} failed: "
            f"{type(err).__name__}: {err}"
        ) from None
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ActivationError(f"{module_name!r} has no attribute {attr_path!r} (from {path!r})")
        obj = getattr(obj, part)
    check_safe(obj, path)

    # A class that registered itself on import keeps its metadata (gated, gate, paper).
    for spec in _SPECS.values():
        if spec.factory is obj:
            return spec

    factory: Callable[[], nn.Module]
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        factory = obj
    elif isinstance(obj, nn.Module):
        # An instance: copy it, since handing out one instance would share its hooks.
        factory = lambda: copy.deepcopy(obj)  # noqa: E731
    elif callable(obj):
        fn = obj
        factory = lambda: CallableActivation(fn, path)  # noqa: E731
    else:
        raise ActivationError(f"{path!r} is a {type(obj).__name__}, not a function or nn.Module")
    try:
        module = factory()
    except Exception as err:
        raise ActivationError(f"cannot build {path!r} with no arguments: {err}") from None
    check_activation(module, path)
    return ActSpec(name=path, factory=factory, fn=_module_fn(factory))


class CallableActivation(nn.Module):
    """Wraps a plain tensor -> tensor function (from an import path) as a hookable module."""

    def __init__(self, fn: Callable[[Tensor], Tensor], name: str = ""):
        super().__init__()
        self.fn, self.name = fn, name

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return repr(self.name)

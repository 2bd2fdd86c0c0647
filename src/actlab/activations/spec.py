"""What the registry stores for each activation, and the error a bad lookup raises."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor, nn

from actlab.errors import ActlabError


class ActivationError(ActlabError, ValueError):
    """An activation name, formula or import path that cannot be resolved."""


@dataclass(frozen=True)
class ActSpec:
    """One activation: how to build it, plus the metadata reports and models read.

    `factory` builds a fresh module on every call: a shared instance would share its hooks,
    so per-layer statistics from two layers would be mixed together.
    """

    name: str
    factory: Callable[[], nn.Module]
    gated: bool = False
    # For gated entries: the registry name of the plain function applied to the gate half.
    gate: str | None = None
    formula: str = ""
    paper: str = ""
    # The elementwise function of a plain entry (None for gated ones): used to measure it.
    fn: Callable[[Tensor], Tensor] | None = None

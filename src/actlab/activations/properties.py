"""Measured properties of an activation: range, moments, slope, saturation, monotone, smooth.

Everything is measured from the function itself, in float64, on one fixed grid, so a user's
formula or imported function is described the same way as the built-in entries. Gated entries
are described by their gate function.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from actlab.activations.registry import get_spec
from actlab.activations.spec import ActivationError, ActSpec

RANGE = 10.0  # range, moments, slope, monotone and smooth are read on [-RANGE, RANGE]
WIDE = 30.0  # saturation is read on [-WIDE, WIDE]: 10 standard deviations of N(0, 3^2)
POINTS = 10_000  # grid points on each side of 0; steps are 1e-3 on RANGE, 3e-3 on WIDE
# 2 * POINTS + 1 stays under torch's parallel grain size (32768 elements), so each op runs on one
# thread: with OpenMP threads competing for busy cores, these small ops ran 50x slower.
SATURATION_SLOPE = 0.01  # |f'| below this counts as saturated (the C1 study's threshold)
SATURATION_STD = 3.0
ZERO_MEAN_TOL = 0.1  # |E f(x)| below this, x ~ N(0, 1), counts as zero-centred
MONOTONE_TOL = 1e-6  # f' >= -this everywhere on the grid counts as monotone (non-decreasing)
SMOOTH_TOL = 0.01  # f' changing by more than this between grid neighbours is a kink


def _plain(spec_or_name: str | ActSpec) -> ActSpec:
    """The plain function behind an entry: itself, or for gated entries its gate."""
    spec = get_spec(spec_or_name)
    if spec.gated:
        spec = get_spec(spec.gate)
    if spec.fn is None:
        raise ActivationError(f"activation {spec.name!r} has no elementwise function to measure")
    return spec


def derivative(spec_or_name: str | ActSpec, x: Tensor) -> Tensor:
    """f'(x) elementwise, by autograd, in x's dtype; for gated entries f is the gate function."""
    fn = _plain(spec_or_name).fn
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = fn(x)
        if not y.requires_grad:  # f does not depend on x
            return torch.zeros_like(x)
        # f is elementwise, so the gradient of sum(f(x)) is f'(x) at each point.
        (grad,) = torch.autograd.grad(y.sum(), x)
    return grad


def _normal_pdf(x: Tensor, std: float) -> Tensor:
    return torch.exp(-0.5 * (x / std) ** 2) / (std * math.sqrt(2 * math.pi))


def measure(name: str | ActSpec) -> dict:
    """Measure an activation's properties. Returns a JSON-able dict:

    range_min, range_max  min and max of f on a grid of step 1e-3 over [-10, 10];
    mean, std             of f(x) for x ~ N(0, 1), by quadrature on that grid (tails beyond 10
                          standard deviations carry less than 1e-22 of the mass);
    max_abs_grad          max |f'| on the grid;
    saturation            P(|f'(x)| < 0.01) for x ~ N(0, 3^2), by quadrature on [-30, 30]
                          (step 3e-3);
    zero_centred          |mean| < 0.1;
    monotone              f' >= -1e-6 at every grid point;
    smooth                f' is continuous: |f'(x + h) - f'(x)| <= 0.01 for all neighbours at
                          h = 1e-3 (a kink jumps by order one; a smooth f with |f''| < 10 passes),
                          so relu and selu are not smooth while elu (alpha = 1) and relu2 are;
    gated, gate           whether the entry is gated, and the gate function measured (else None).
    """
    spec = get_spec(name)
    plain = _plain(spec)
    # Integer steps times h, so the grid is symmetric and holds x = 0 exactly.
    steps = torch.arange(-POINTS, POINTS + 1, dtype=torch.float64)
    h = RANGE / POINTS
    x = steps * h
    with torch.no_grad():
        f = plain.fn(x).to(torch.float64)
    grad = derivative(plain, x).to(torch.float64)
    if not (torch.isfinite(f).all() and torch.isfinite(grad).all()):
        raise ActivationError(
            f"cannot measure {spec.name!r}: it or its slope is not finite somewhere on "
            f"[-{RANGE:g}, {RANGE:g}]"
        )

    # Riemann sums on a fine grid: exact enough for kinked f, where Gauss-Hermite is not.
    weight = _normal_pdf(x, 1.0) * h
    mean = float((f * weight).sum())
    std = math.sqrt(float(((f - mean) ** 2 * weight).sum()))

    h_wide = WIDE / POINTS
    x_wide = steps * h_wide
    saturated = derivative(plain, x_wide).abs() < SATURATION_SLOPE  # NaN counts as not saturated
    saturation = float((_normal_pdf(x_wide, SATURATION_STD) * h_wide)[saturated].sum())

    return {
        "range_min": float(f.min()),
        "range_max": float(f.max()),
        "mean": mean,
        "std": std,
        "max_abs_grad": float(grad.abs().max()),
        "saturation": min(saturation, 1.0),
        "zero_centred": abs(mean) < ZERO_MEAN_TOL,
        "monotone": bool((grad >= -MONOTONE_TOL).all()),
        "smooth": bool((grad.diff().abs() <= SMOOTH_TOL).all()),
        "gated": spec.gated,
        "gate": spec.gate,
    }

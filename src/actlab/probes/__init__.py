"""Measurement hooks attached to a model from outside: gradient norms per layer, activation
statistics (saturation, dead units, histograms), gradient sign coherence and path straightness.

    from actlab.probes import attach
    with attach(model) as probes:       # or attach() and train(cfg, callbacks=(probes,))
        ...
    probes.summary()

Each probe is a context manager (hooks on at enter, always off at exit) and a trainer callback
with `records` (one JSON-able dict per recorded step) and `summary()`.
"""
from actlab.probes.activation import ActivationProbe
from actlab.probes.attach import ProbeSet, attach
from actlab.probes.base import MAX_ROWS, Probe, stride_rows
from actlab.probes.grad import GradNormProbe
from actlab.probes.layers import LayerRef, gpt_layers, layers_of, mlp_layers
from actlab.probes.path import PathStraightness
from actlab.probes.sign import SignCoherenceProbe

__all__ = [
    "MAX_ROWS",
    "ActivationProbe",
    "GradNormProbe",
    "LayerRef",
    "PathStraightness",
    "Probe",
    "ProbeSet",
    "SignCoherenceProbe",
    "attach",
    "gpt_layers",
    "layers_of",
    "mlp_layers",
    "stride_rows",
]

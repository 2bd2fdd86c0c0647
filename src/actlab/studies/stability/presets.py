"""Sizes of study C7 per preset.

The model sizes and budgets are those of study C3 (convergence) at the same preset, and the
jobs have C3's layout (stage "tune" on the tuning seed, "eval" on the evaluation seeds), so a
grid rate shared with C3 is the same experiment with the same parameters. The grid differs:
C7 needs rates high enough for training to go unstable, so it runs AdamW from 1e-3 to 3e-1 in
half-decade steps (about 3x apart, C3's steps) on CPU, where C3 tunes over 3e-3..3e-2.

Cost (one thread per run, bundled corpus): quick is C3's quick model (1 x 48, 900 steps,
about 13 CPU-seconds a run, 1.97 nats for GELU at 1e-2 vs the trigram's 2.08), 4 activations
x 6 rates on the tuning seed plus 2 evaluation seeds at each best rate: 32 runs, about 420
CPU-seconds, less where high rates diverge early (a diverged run stops at its first
non-finite loss); under 4 minutes on 2 idle cores. standard is C3's standard model (1 x 64,
1,500 steps, about 47 CPU-seconds a run), all ten activations, 5 evaluation seeds: 110 runs,
about 5,200 CPU-seconds, 45 minutes on 2 cores. full is GPU-sized (C3's full model) with a
grid shifted down a decade, as larger models go unstable at lower rates.
"""

from __future__ import annotations

ARTICLE = ("sigmoid", "relu", "gelu", "silu")
ACTS = ("sigmoid", "tanh", "relu", "relu2", "gelu", "silu", "glu", "reglu", "geglu", "swiglu")
CPU_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)

PRESETS = {
    "smoke": dict(
        acts=ARTICLE, lrs=(1e-2, 3e-1), seeds=(0, 1),
        model=dict(n_layer=1, n_head=2, n_embd=16, block_size=16),
        train=dict(steps=20, batch_size=4, eval_every=10, eval_batches=2, warmup_steps=2,
                   device="cpu", threads=1),
    ),
    "quick": dict(
        acts=ARTICLE, lrs=CPU_GRID, seeds=(0, 1),
        model=dict(n_layer=1, n_head=2, n_embd=48, block_size=64),
        train=dict(steps=900, batch_size=32, eval_every=150, eval_batches=16, warmup_steps=45,
                   device="cpu", threads=1),
    ),
    "standard": dict(
        acts=ACTS, lrs=CPU_GRID, seeds=(0, 1, 2, 3, 4),
        model=dict(n_layer=1, n_head=2, n_embd=64, block_size=64),
        train=dict(steps=1500, batch_size=32, eval_every=250, eval_batches=16, warmup_steps=75,
                   device="cpu", threads=1),
    ),
    "full": dict(
        acts=ACTS + ("bilinear",), lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
        seeds=(0, 1, 2, 3, 4),
        model=dict(n_layer=4, n_head=4, n_embd=256, block_size=256),
        train=dict(steps=3000, batch_size=32, eval_every=250, eval_batches=32,
                   warmup_steps=150, device="auto", threads=1),
    ),
}

"""The two axes of study C6 per preset, and the arithmetic that turns an axis into runs.

size axis   a ladder of model shapes trained at a fixed ratio of training tokens to
            non-embedding parameters (Chinchilla-style: steps = ratio * params /
            (batch * context)), so every size gets the same data per parameter;
depth axis  2 to 16 blocks at a fixed width and a fixed number of steps, so only depth moves.

Parameters are counted without the token and position embeddings and the final norm (Kaplan et
al. 2020's convention): the blocks' attention, MLP and norms, in the arithmetic of actlab.sizes,
so a job's length is known before anything is built.

Costs (CPU-seconds on one thread of this machine, batch 32 x 64 tokens, measured by the quick
preset): at width 32 about 6-7 ms per step and block (2 x 32: 150 steps in 2.5 s; 16 x 32:
15 s), 1 x 32 about 9 ms a step, 1 x 48 about 12 ms.
  quick     the size ladder 1 x 16 .. 1 x 48 at 64 tokens per parameter (102 to 884 steps,
            about 17 s per activation and seed) and the depth ladder at width 32 for only 150
            steps (about 31 s): two seeds, one a-priori rate per axis (1e-2, C3's best for
            1 x 48), four activations: about 385 CPU-seconds, a little over 3 minutes of two
            idle cores. Only 1 x 48 can end below the trigram baseline at this budget, so the
            quick verdict is INCONCLUSIVE by the regime rule.
  standard  the size ladder 1 x 32 .. 1 x 92 (8.1x) at 80 tokens per parameter (about 500 to
            4,000 steps, about 180 s per activation and run), each (point, activation) rate
            tuned on the tuning seed (two rates grown past an edge: at least three runs); the
            depth ladder at width 32 for 900 steps (about 190 s per activation and run), rates
            tuned at 8 x 32 for every depth; three seeds: about 7,200 CPU-seconds with four
            activations, an hour of two idle cores (the tuning grids' growth past an edge adds
            to it).
  full      GPU-sized: 4 blocks, widths 64 .. 256 (16x) at 20 tokens per parameter, depth 2 ..
            24 at width 256; five seeds. The bundled corpus is about 1M characters, so the
            largest sizes repeat it many times: pass --data with a larger corpus.
"""

from __future__ import annotations

from types import SimpleNamespace

from actlab.sizes import parameter_count

BASE_ACTS = ("sigmoid", "gelu", "relu2")
OPTIONAL_ACTS = ("leaky_relu2",)  # joined when actlab.activations knows them at run time
AXES = ("size", "depth")


def _train(batch, block, eval_batches, device="cpu"):
    return dict(batch_size=batch, block_size=block, eval_batches=eval_batches, device=device,
                threads=1)


PRESETS = {
    "smoke": dict(
        seeds=(0, 1), lrs={"size": (1e-2,), "depth": (1e-2,)},
        size=dict(shapes=((1, 8), (1, 12), (1, 16)), n_head=2, ratio=0.25),
        depth=dict(depths=(1, 2, 3), n_embd=8, n_head=2, steps=4),
        train=_train(4, 8, 2),
    ),
    "quick": dict(
        seeds=(0, 1), lrs={"size": (1e-2,), "depth": (1e-2,)},
        size=dict(shapes=((1, 16), (1, 24), (1, 32), (1, 48)), n_head=2, ratio=64),
        depth=dict(depths=(2, 4, 8, 16), n_embd=32, n_head=2, steps=150),
        train=_train(32, 64, 8),
    ),
    "standard": dict(
        seeds=(0, 1, 2), lrs={"size": (3e-3, 1e-2), "depth": (3e-3, 1e-2)},
        size=dict(shapes=((1, 32), (1, 46), (1, 64), (1, 92)), n_head=2, ratio=80),
        depth=dict(depths=(2, 4, 8, 16), n_embd=32, n_head=2, steps=900, tune_at="8x32"),
        train=_train(32, 64, 16),
    ),
    "full": dict(
        seeds=(0, 1, 2, 3, 4), lrs={"size": (3e-4, 1e-3, 3e-3), "depth": (3e-4, 1e-3, 3e-3)},
        size=dict(shapes=((4, 64), (4, 96), (4, 128), (4, 192), (4, 256)), n_head=4, ratio=20),
        depth=dict(depths=(2, 4, 8, 16, 24), n_embd=256, n_head=4, steps=3000, tune_at="8x256"),
        train=_train(64, 256, 32, device="auto"),
    ),
}


def non_embedding_params(n_layer: int, n_embd: int, block_size: int, mlp_ratio: float = 4.0) -> int:
    """The blocks' parameters (attention, MLP, their norms and biases) of a GPT of this shape."""
    shape = SimpleNamespace(n_layer=n_layer, n_embd=n_embd, block_size=block_size,
                            mlp_ratio=mlp_ratio)
    return parameter_count(shape, 0) - block_size * n_embd


def steps_for(params: int, ratio: float, batch: int, block: int) -> int:
    """Chinchilla-style length: ratio tokens per parameter, at least one step."""
    return max(1, round(ratio * params / (batch * block)))


def acts_for(preset: dict | None = None) -> tuple[str, ...]:
    """The activations of this run: the base three, and each optional one that is registered
    now (so a name added to the registry later joins without a change here)."""
    from actlab.activations import names

    known = set(names())
    return BASE_ACTS + tuple(a for a in OPTIONAL_ACTS if a in known)


def points(p: dict, axis: str) -> list[dict]:
    """The points of one axis: label, x (log10 params or depth is taken by the caller),
    model shape, steps and tokens."""
    t = p["train"]
    block, batch = t["block_size"], t["batch_size"]
    out = []
    if axis == "size":
        a = p["size"]
        for n_layer, n_embd in a["shapes"]:
            n = non_embedding_params(n_layer, n_embd, block)
            steps = steps_for(n, a["ratio"], batch, block)
            out.append(dict(label=f"{n_layer}x{n_embd}", n_layer=n_layer, n_embd=n_embd,
                            n_head=a["n_head"], params=n, steps=steps))
    else:
        a = p["depth"]
        for depth in a["depths"]:
            n = non_embedding_params(depth, a["n_embd"], block)
            out.append(dict(label=f"{depth}x{a['n_embd']}", n_layer=depth, n_embd=a["n_embd"],
                            n_head=a["n_head"], params=n, steps=a["steps"]))
    for pt in out:
        pt["tokens"] = pt["steps"] * batch * block
    return out

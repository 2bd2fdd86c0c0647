"""A plain deep MLP: the textbook setting for vanishing gradients and zig-zag descent.

No residual path, no normalisation, so every gradient crosses every activation:

    from actlab.nn import DeepMLP, default_init
    model = DeepMLP(n_in, 128, depth=16, n_out=vocab, act="sigmoid",
                    init=default_init("sigmoid"), seed=0)

`depth` hidden layers (Linear -> act), then a Linear head; `model.fc[i]`, `model.acts[i]`,
`model.head`. The task it learns lives in actlab.data.chartask, its loop in
actlab.training.mlp_loop, and the probes find its layers through actlab.probes.layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from actlab import activations
from actlab.errors import ActlabError

INITS = ("xavier", "kaiming")
# Bounded, saturating activations get the init Glorot & Bengio 2010 derived for them; the
# rest are ReLU-like and get He et al. 2015's, which keeps ReLU activations' variance fixed.
_XAVIER_ACTS = ("sigmoid", "sigmoid_centered", "hard_sigmoid", "tanh")


def default_init(act: str) -> str:
    """"xavier" for sigmoid/tanh-like activations (what Glorot & Bengio 2010 used for them),
    "kaiming" for ReLU-like ones (He et al. 2015)."""
    return "xavier" if act in _XAVIER_ACTS else "kaiming"


class DeepMLP(nn.Module):
    """x -> act(fc[0] x) -> act(fc[1] .) ... -> head: `depth` hidden layers of `width` units.

    No residual connections and no normalisation, on purpose. The activation is a fresh
    registry module per layer (so probes can hook each one). Gated activations are refused:
    they halve the width after every layer and need parameter matching, which would make
    "depth" and "width" mean something else here.

    init "xavier": U(-a, a), a = sqrt(6 / (fan_in + fan_out)), Var = 2 / (fan_in + fan_out)
    (Glorot & Bengio 2010, eq. 16, "normalized initialization").
    init "kaiming": N(0, 2 / fan_in) (He et al. 2015, eq. 10). Biases are zero. Every Linear,
    the head included, uses the same scheme; weights come from a private generator seeded by
    `seed`, so the init never depends on (or disturbs) torch's global RNG.
    """

    def __init__(self, n_in: int, width: int, depth: int, n_out: int, act: str = "relu",
                 init: str = "kaiming", seed: int = 0):
        super().__init__()
        for name, v in (("n_in", n_in), ("width", width), ("depth", depth), ("n_out", n_out)):
            if int(v) != v or v < 1:
                raise ActlabError(f"{name} must be a positive integer, got {v!r}")
        if init not in INITS:
            raise ActlabError(f"init must be one of {', '.join(INITS)}; got {init!r}")
        spec = activations.get_spec(act)
        if spec.gated:
            raise ActlabError(f"DeepMLP takes plain activations only; {act!r} is gated")
        self.act_name, self.init = spec.name, init
        self.fc = nn.ModuleList(nn.Linear(n_in if i == 0 else width, width) for i in range(depth))
        self.acts = nn.ModuleList(activations.get(act) for _ in range(depth))
        self.head = nn.Linear(width, n_out)
        gen = torch.Generator().manual_seed(int(seed))
        for lin in [*self.fc, self.head]:
            if init == "xavier":
                nn.init.xavier_uniform_(lin.weight, generator=gen)
            else:
                nn.init.kaiming_normal_(lin.weight, mode="fan_in", nonlinearity="relu", generator=gen)
            nn.init.zeros_(lin.bias)

    @property
    def depth(self) -> int:
        return len(self.fc)

    def forward(self, x: Tensor) -> Tensor:
        for lin, act in zip(self.fc, self.acts):
            x = act(lin(x))  # (B, width)
        return self.head(x)  # (B, n_out) logits

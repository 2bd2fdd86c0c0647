"""A plain deep MLP, a real next-character task from the bundled corpus, and a tiny training loop.

The textbook setting for vanishing gradients and zig-zag descent: no residual path, no
normalisation, so every gradient crosses every activation. API:

    from actlab.mlp import DeepMLP, char_task, train_mlp, mlp_layers, default_init
    task = char_task()                               # cached per process
    model = DeepMLP(task.n_in, 128, depth=16, n_out=task.vocab_size, act="sigmoid",
                    init=default_init("sigmoid"), seed=0)
    hist = train_mlp(model, task, steps=200, optimizer="sgd", lr=0.1, batch_size=64, seed=0,
                     callbacks=(probe,))             # after_backward / after_step, as in actlab.train
    layers = mlp_layers(model)                       # LayerRef per hidden layer, for actlab.probes

`DeepMLP(n_in, width, depth, n_out, act, init, seed)`: `depth` hidden layers
(Linear -> act), then a Linear head; `model.fc[i]`, `model.acts[i]`, `model.head`.
`char_task(context, embed_dim)`: predict the next character from the previous `context`
characters, each given as a fixed random N(0, 1) vector; `task.batch(gen, n)`, `task.val_set()`.
`train_mlp(...) -> dict`: {"outcome", "steps", "train_loss", "val_loss", "history"}, JSON-able,
bitwise deterministic on CPU for a given seed and thread count.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from actlab import activations
from actlab.errors import ActlabError

INITS = ("xavier", "kaiming")
OPTIMIZERS = ("sgd", "adamw")
# Bounded, saturating activations get the init Glorot & Bengio 2010 derived for them; the
# rest are ReLU-like and get He et al. 2015's, which keeps ReLU activations' variance fixed.
_XAVIER_ACTS = ("sigmoid", "sigmoid_centered", "hard_sigmoid", "tanh")
TASK_SEED = 1234  # the fixed input embedding never depends on a run's seed


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


@dataclass(frozen=True)
class CharTask:
    """Next character from the previous `context` characters of the bundled corpus.

    Each character is a fixed random N(0, 1) vector of `embed_dim` numbers, so inputs are zero
    mean and unit variance per component, as the init analyses of Glorot & Bengio 2010 and
    He et al. 2015 assume. The train/val split is the corpus's (first 90% / last 10%).
    """

    context: int
    embed_dim: int
    vocab_size: int
    train_ids: Tensor  # int64, 1-D
    val_ids: Tensor
    embedding: Tensor  # (vocab_size, embed_dim), fixed

    @property
    def n_in(self) -> int:
        return self.context * self.embed_dim

    def _windows(self, ids: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
        idx = offsets[:, None] + torch.arange(self.context)  # (B, context)
        x = self.embedding[ids[idx]].reshape(len(offsets), self.n_in)  # (B, context * embed_dim)
        return x, ids[offsets + self.context]

    def batch(self, generator: torch.Generator, batch_size: int) -> tuple[Tensor, Tensor]:
        """Random training windows drawn with `generator`: (x float32 (B, n_in), y int64 (B,))."""
        high = len(self.train_ids) - self.context
        offsets = torch.randint(0, high, (batch_size,), generator=generator)
        return self._windows(self.train_ids, offsets)

    def val_set(self, n: int = 2048) -> tuple[Tensor, Tensor]:
        """`n` validation windows at evenly spaced offsets: no randomness."""
        high = len(self.val_ids) - self.context - 1
        offsets = torch.linspace(0, high, n).long()
        return self._windows(self.val_ids, offsets)


@functools.lru_cache(maxsize=4)
def char_task(context: int = 8, embed_dim: int = 16) -> CharTask:
    """The bundled Shakespeare corpus as a CharTask (built once per process and arguments)."""
    from actlab.data import prepare

    data = prepare(None, "char", block_size=context + 1)
    gen = torch.Generator().manual_seed(TASK_SEED)
    emb = torch.randn(data.vocab_size, embed_dim, generator=gen)
    return CharTask(context, embed_dim, data.vocab_size, data.train_ids, data.val_ids, emb)


def _noop(*_args) -> None:
    return None


def train_mlp(model: nn.Module, task: CharTask, steps: int, optimizer: str = "sgd", lr: float = 0.1,
              batch_size: int = 64, seed: int = 0, callbacks: tuple = (), momentum: float = 0.0,
              weight_decay: float = 0.0, eval_every: int | None = None, eval_size: int = 2048) -> dict:
    """Train with a constant learning rate and no clipping (the textbook setting: nothing
    rescues a vanishing or exploding gradient). Callbacks follow actlab.train's protocol:
    `after_backward(step, model)` with gradients present, then `after_step(step, model)`.

    History rows: {"step", "train_loss"} every step (the loss of the batch before that step's
    update), plus "val_loss" every `eval_every` steps (default steps // 4) and at the last step.
    A non-finite loss stops the run with outcome "diverged".
    """
    if optimizer not in OPTIMIZERS:
        raise ActlabError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {optimizer!r}")
    if steps < 1 or batch_size < 1 or not lr > 0:
        raise ActlabError(f"steps, batch_size and lr must be positive; got {steps}, {batch_size}, {lr}")
    params = list(model.parameters())
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(int(seed))
    val_x, val_y = task.val_set(eval_size)
    every = eval_every or max(1, steps // 4)
    history: list[dict] = []
    outcome, train_loss, val_loss = "completed", None, None
    model.train()
    for cb in callbacks:  # the same protocol as actlab.train: probes bind before step 0
        getattr(cb, "before_train", _noop)(model)
    for step in range(steps):
        x, y = task.batch(gen, batch_size)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        for cb in callbacks:
            getattr(cb, "after_backward", _noop)(step, model)
        opt.step()
        opt.zero_grad(set_to_none=True)
        for cb in callbacks:
            getattr(cb, "after_step", _noop)(step, model)
        train_loss = loss.item()
        row = {"step": step, "train_loss": train_loss}
        if not math.isfinite(train_loss):
            outcome = "diverged"
            history.append(row)
            break
        if (step + 1) % every == 0 or step == steps - 1:
            model.eval()  # as in actlab.train, so forward hooks can tell evaluation apart
            with torch.no_grad():
                val_loss = F.cross_entropy(model(val_x), val_y).item()
            model.train()
            row["val_loss"] = val_loss
        history.append(row)
    return {"outcome": outcome, "steps": len(history), "train_loss": train_loss,
            "val_loss": val_loss, "history": history}


def mlp_layers(model: DeepMLP) -> list:
    """One actlab.probes LayerRef per hidden layer: its activation, the Linear feeding it
    (weights["fc.weight"]) and the Linear consuming its output (the next layer, or the head)."""
    from actlab.probes import LayerRef  # late import: probes import model code, not the reverse

    spec = activations.get_spec(model.act_name)
    consumers = [*model.fc[1:], model.head]
    return [
        LayerRef(name=f"layer{i}", act=model.acts[i], spec=spec, consumer=consumers[i],
                 weights={"fc.weight": model.fc[i].weight})
        for i in range(model.depth)
    ]

"""Flat, validated run configuration that round-trips through JSON and TOML.

A run is fully described by a `TrainConfig` (which holds its `ModelConfig`), so the
config hash identifies the run and every stored number can be traced back to it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from actlab.errors import ActlabError

NORMS = ("layernorm", "rmsnorm")
# Attention score normalisers (see model.CausalSelfAttention) and output heads.
ATTENTIONS = ("softmax", "softmax_gated", "sigmoid", "sigmoid_nobias")
HEADS = ("softmax", "sigmoid")  # softmax + cross-entropy | independent sigmoids + BCE
# How a gated FFN computes f(gate) * up and c_proj (activations/kernels.py): eager module calls,
# fused aten kernels, compiled kernels, or auto (compiled for big CPU tensors, fused otherwise).
KERNELS = ("auto", "eager", "fused", "compile")
OPTIMIZERS = ("adamw", "sgd")
TOKENIZERS = ("char", "byte", "bpe")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "bfloat16")
COMPILE_CHOICES = ("auto", "on", "off")
# The studies' presets, smallest first: every study sizes each in its own PRESETS table.
PRESET_NAMES = ("smoke", "quick", "standard", "full")
COMPILE_AUTO_STEPS = 2000  # `compile = "auto"` compiles runs of at least this many steps


def _positive(name: str, value: int | float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ActlabError(f"{name} must be {bound}, got {value}")


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ActlabError(f"{name} must be one of {', '.join(options)}; got {value!r}")


@dataclass
class ModelConfig:
    """Architecture of the GPT-style decoder (sizes are counts, not bytes)."""

    vocab_size: int = 256  # set from the tokenizer by the trainer
    block_size: int = 128  # context length in tokens
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    act: str = "gelu"  # any name `actlab acts` lists, a `pkg.mod:fn` path or a formula in x
    mlp_ratio: float = 4.0  # hidden width of a plain MLP / n_embd; gated MLPs get 2/3 of it
    norm: str = "layernorm"
    bias: bool = True  # biases in Linear and LayerNorm (GPT-2 has them)
    dropout: float = 0.0
    residual: bool = True  # False removes the residual connections (textbook ablation)
    attention: str = "softmax"
    head: str = "softmax"
    init_std: float = 0.02
    kernels: str = "auto"  # gated FFN kernels: auto | eager | fused | compile (same numbers)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            _positive(name, getattr(self, name))
        _positive("mlp_ratio", self.mlp_ratio)
        _positive("init_std", self.init_std)
        if not 0.0 <= self.dropout < 1.0:
            raise ActlabError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_embd % self.n_head:
            raise ActlabError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        _choice("norm", self.norm, NORMS)
        _choice("attention", self.attention, ATTENTIONS)
        _choice("head", self.head, HEADS)
        _choice("kernels", self.kernels, KERNELS)
        from actlab import activations  # late import: the registry imports torch modules

        activations.get_spec(self.act)  # raises a one-line error for an unknown activation


@dataclass
class TrainConfig:
    """One training run: data, optimisation, evaluation and where it runs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    data: str | None = None  # text file or folder of .txt; None = the bundled corpus
    tokenizer: str = "char"
    bpe_vocab: int = 1024  # vocabulary size when tokenizer = bpe
    val_fraction: float = 0.1
    steps: int = 200
    batch_size: int = 16  # sequences per step
    optimizer: str = "adamw"
    lr: float = 2e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 20
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    momentum: float = 0.0  # SGD only
    grad_clip: float = 1.0  # max global grad norm; 0 disables (the norm is still recorded)
    eval_every: int = 50  # steps between validation evaluations (and at the last step)
    eval_batches: int = 8  # fixed validation batches per evaluation
    device: str = "auto"
    dtype: str = "float32"  # bfloat16 = autocast on CUDA; CPU always runs float32
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    compile: str = "auto"  # torch.compile the training forward: auto | on | off (see compile_wanted)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if isinstance(self.compile, bool):  # true/false, as configs before "auto" wrote it
            self.compile = "on" if self.compile else "off"
        for name in ("steps", "batch_size", "eval_every", "eval_batches", "bpe_vocab"):
            _positive(name, getattr(self, name))
        for name in ("warmup_steps", "weight_decay", "momentum", "grad_clip", "threads", "seed"):
            _positive(name, getattr(self, name), allow_zero=True)
        _positive("lr", self.lr)
        if not 0.0 < self.val_fraction < 1.0:
            raise ActlabError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ActlabError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("tokenizer", self.tokenizer, TOKENIZERS)
        _choice("device", self.device, DEVICES)
        _choice("dtype", self.dtype, DTYPES)
        _choice("compile", self.compile, COMPILE_CHOICES)

    def compile_wanted(self) -> bool:
        """Whether training compiles its forward: `on`, or `auto` for runs of COMPILE_AUTO_STEPS
        steps or more. Decided from the config alone, so a run's numbers never depend on timing.

        Measured with benchmarks/throughput.py on a 2-core CPU: compilation takes 5-8 s with a warm
        inductor cache and 20-25 s cold, and saves ~8 ms of a 95 ms step at width 128 (S) and
        ~30 ms of a 950 ms step at width 384 (M): paid back after ~900 steps (S, warm cache) to
        ~2,500 (S, cold); ~300-700 at M. Runs of 2,000 steps or more get it; the short runs of
        the studies and sweeps never do.
        """
        return self.compile == "on" or (self.compile == "auto" and self.steps >= COMPILE_AUTO_STEPS)

    # -- serialisation ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def hash(self) -> str:
        """Short stable identity of the run: same config, same hash."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Build from a nested ({"model": {...}, ...}) or flat mapping of fields."""
        return merge(cls(), raw)


MODEL_FIELDS = {f.name for f in fields(ModelConfig)}
TRAIN_FIELDS = {f.name for f in fields(TrainConfig)} - {"model"}


def merge(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Return a new config with `overrides` applied; keys may be flat or under "model"."""
    train = {k: v for k, v in base.to_dict().items() if k != "model"}
    model = dict(base.to_dict()["model"])
    flat = dict(overrides)
    nested = flat.pop("model", None) or {}
    train_section = flat.pop("train", None) or {}
    if not isinstance(nested, dict) or not isinstance(train_section, dict):
        raise ActlabError("config sections 'model' and 'train' must be tables")
    flat.update(train_section)
    for key, value in list(nested.items()) + list(flat.items()):
        if key in MODEL_FIELDS:
            model[key] = _typed(key, value, model[key])
        elif key in TRAIN_FIELDS:
            train[key] = _typed(key, value, train[key])
        else:
            raise ActlabError(f"unknown config key {key!r}")
    try:
        return TrainConfig(model=ModelConfig(**model), **train)
    except TypeError as err:  # wrong value types surface as TypeError from comparisons
        raise ActlabError(f"malformed config: {err}") from None


def _typed(key: str, value: Any, default: Any) -> Any:
    """Check `value` against the type of the field's current value (one-line errors)."""
    if key == "compile" and isinstance(value, bool):  # true/false: on/off (TrainConfig)
        return value
    if default is None or value is None:  # optional strings such as `data`
        if value is None or isinstance(value, str):
            return value
        raise ActlabError(f"config key {key!r} must be a string, got {value!r}")
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        kind = type(default).__name__
        raise ActlabError(f"config key {key!r} must be {kind}, got {value!r}")
    return value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config file into a plain mapping (one-line errors)."""
    path = Path(path)
    if not path.is_file():
        raise ActlabError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as err:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        first = str(err).splitlines()[0]
        raise ActlabError(f"malformed config {path}: {first}") from None
    if not isinstance(data, dict):
        raise ActlabError(f"malformed config {path}: the top level must be a table/object")
    return data

"""Flat, validated run configuration that round-trips through JSON and TOML.

A run is fully described by a `TrainConfig` (which holds its `ModelConfig`), so the
config hash identifies the run and every stored number can be traced back to it.

Every value is checked when a config is built, before anything is allocated: rates finite,
counts within bounds, and the sizes against an arithmetic estimate of the memory they need
(`memory_estimate`), so a model that cannot fit is refused in one line instead of reaching the
allocator, or hanging while its layers are built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from actlab.errors import ActlabError
from actlab.files.schema import unversioned, versioned
from actlab.sizes import FLOAT_BYTES, sci, memory_estimate, parameter_count

NORMS = ("layernorm", "rmsnorm")
# Attention score normalisers (see model.CausalSelfAttention) and output heads.
ATTENTIONS = ("softmax", "softmax_gated", "sigmoid", "sigmoid_nobias")
HEADS = ("softmax", "sigmoid")  # softmax + cross-entropy | independent sigmoids + BCE
FFNS = ("dense", "moe")  # the block's FFN: one MLP | top-k mixture of experts (nn/moe.py)
ROUTERS = ("softmax", "sigmoid")  # MoE router scores: softmax (Mixtral) | sigmoid (DeepSeek-V3)
MAX_EXPERTS = 2**16
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
MAX_SEED = 2**64 - 1  # torch.manual_seed takes seeds up to here
MAX_STEPS = 10**8  # steps, warmup_steps, eval_every: years of training at 1 s per step
MAX_EVAL_BATCHES = 10**5  # the fixed validation batches are held in memory
MAX_LAYERS = 10_000  # building more modules than this takes minutes whatever their width
MAX_BPE_VOCAB = 2**20


def max_threads() -> int:
    """The largest `threads` a config may ask for: far more than any machine benefits from."""
    return max(64, 4 * (os.cpu_count() or 1))


def _count(name: str, value: object, low: int, high: int) -> None:
    """A whole number within [low, high] (the value is named in the message)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ActlabError(f"{name} must be a whole number, got {_short(value)}")
    if not low <= value <= high:
        raise ActlabError(f"{name} must be between {low} and {high}, got {_short(value)}")


def _real(name: str, value: object, low: float, high: float = math.inf, *,
          open_low: bool = False, open_high: bool = False) -> None:
    """A finite number within the given bounds; NaN and infinity are refused by name."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ActlabError(f"{name} must be a number, got {_short(value)}")
    finite = isinstance(value, numbers.Integral) or math.isfinite(value)
    if not (finite and (low < value if open_low else low <= value)
            and (value < high if open_high else value <= high)):
        bound = f"{'>' if open_low else '>='} {low:g}" if high == math.inf else (
            f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}")
        raise ActlabError(f"{name} must be a finite number {bound}, got {_short(value)}")


def _positive(name: str, value: int | float, allow_zero: bool = False) -> None:
    _real(name, value, 0.0, open_low=not allow_zero)


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
    ffn: str = "dense"  # dense | moe: E experts of width mlp_ratio * n_embd // E, top_k per token
    n_experts: int = 4
    top_k: int = 2
    router: str = "softmax"  # softmax | sigmoid (the MoE router's score function)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_head", "n_embd"):
            _count(name, getattr(self, name), 1, 2**63 - 1)
        _count("n_layer", self.n_layer, 1, MAX_LAYERS)
        _positive("mlp_ratio", self.mlp_ratio)
        _positive("init_std", self.init_std)
        _real("dropout", self.dropout, 0.0, 1.0, open_high=True)
        # Sizes first, in arithmetic alone: nothing below may build or allocate anything.
        weights = FLOAT_BYTES * parameter_count(self, self.vocab_size)
        _fits(weights, f"{self.size_fields()} give about {sci(weights // FLOAT_BYTES)} "
                       f"parameters, which need about {sci(weights)} bytes for the float32 "
                       "weights alone")
        if self.n_embd % self.n_head:
            raise ActlabError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        _choice("norm", self.norm, NORMS)
        _choice("attention", self.attention, ATTENTIONS)
        _choice("head", self.head, HEADS)
        _choice("kernels", self.kernels, KERNELS)
        _choice("ffn", self.ffn, FFNS)
        _choice("router", self.router, ROUTERS)
        _count("n_experts", self.n_experts, 1, MAX_EXPERTS)
        _count("top_k", self.top_k, 1, self.n_experts)
        from actlab import activations  # late import: the registry imports torch modules

        gated = activations.get_spec(self.act).gated  # one-line error for an unknown activation
        if self.ffn == "moe":
            if gated:
                raise ActlabError(f"ffn 'moe' takes a plain activation for its experts; {self.act!r} "
                                  "is gated")
            if int(round(self.mlp_ratio * self.n_embd)) < self.n_experts:
                raise ActlabError(f"ffn 'moe': the FFN width mlp_ratio * n_embd = "
                                  f"{self.mlp_ratio * self.n_embd:g} is split between "
                                  f"{self.n_experts} experts, fewer than one unit each")

    def size_fields(self) -> str:
        """The fields that set the parameter count, as `name=value` (for messages)."""
        return ", ".join(f"{k}={getattr(self, k)}" for k in
                         ("n_layer", "n_embd", "mlp_ratio", "vocab_size", "block_size"))


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
        if not isinstance(self.model, ModelConfig):
            raise ActlabError(f"model must be a ModelConfig or a table, got {_short(self.model)}")
        if isinstance(self.compile, bool):  # true/false, as configs before "auto" wrote it
            self.compile = "on" if self.compile else "off"
        for name in ("steps", "eval_every"):
            _count(name, getattr(self, name), 1, MAX_STEPS)
        _count("warmup_steps", self.warmup_steps, 0, MAX_STEPS)
        _count("eval_batches", self.eval_batches, 1, MAX_EVAL_BATCHES)
        _count("batch_size", self.batch_size, 1, 2**63 - 1)
        _count("bpe_vocab", self.bpe_vocab, 1, MAX_BPE_VOCAB)
        _count("seed", self.seed, 0, MAX_SEED)
        _count("threads", self.threads, 0, max_threads())  # 0: leave torch's default
        _positive("lr", self.lr)
        for name in ("weight_decay", "momentum", "grad_clip"):
            _positive(name, getattr(self, name), allow_zero=True)
        for name in ("beta1", "beta2"):  # AdamW needs 0 <= beta < 1
            _real(name, getattr(self, name), 0.0, 1.0, open_high=True)
        _real("val_fraction", self.val_fraction, 0.0, 1.0, open_low=True, open_high=True)
        _real("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        if self.data is not None and (not isinstance(self.data, str) or "\x00" in self.data):
            raise ActlabError(f"data must be a path without NUL bytes, got {self.data!r}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.tokenizer not in TOKENIZERS:  # the path of a Hugging Face tokenizer.json, then
            from actlab.data.tokenizer_files import check_tokenizer  # late: actlab.data imports torch

            check_tokenizer(self.tokenizer)
        _choice("device", self.device, DEVICES)
        _choice("dtype", self.dtype, DTYPES)
        _choice("compile", self.compile, COMPILE_CHOICES)
        total, parts = memory_estimate(self)
        largest = max(parts, key=lambda k: parts[k][0])
        _fits(total, f"training needs about {sci(total)} bytes, most of it "
                     f"{sci(parts[largest][0])} for {largest} ({parts[largest][1]})")

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
        """config.json's text: the fields and the files' schema_version (files.schema), which
        is not part of the run's identity: hash() leaves it out."""
        return json.dumps(versioned(self.to_dict()), indent=2, sort_keys=True, allow_nan=False)

    def hash(self) -> str:
        """Short stable identity of the run: same config, same hash."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Build from a nested ({"model": {...}, ...}) or flat mapping of fields."""
        return merge(cls(), raw)


# -- memory, estimated before anything is built ------------------------------------------------


def machine_memory() -> int | None:
    """Physical memory in bytes; None where the OS cannot say (sizes are then not checked)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not POSIX: psutil, where installed
        try:
            import psutil

            return int(psutil.virtual_memory().total)
        except Exception:
            return None


def _fits(needed: int, what: str) -> None:
    memory = machine_memory()
    if memory is not None and needed > memory:
        raise ActlabError(f"{what}; this machine has {memory / 1e9:.0f} GB of memory")


MODEL_FIELDS = {f.name for f in fields(ModelConfig)}
TRAIN_FIELDS = {f.name for f in fields(TrainConfig)} - {"model"}


def merge(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Return a new config with `overrides` applied; keys may be flat or under "model".
    A top-level "schema_version" (config.json carries one) is checked and dropped."""
    train = base.to_dict()
    model = train.pop("model")
    flat = unversioned(overrides, "config")  # a copy
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
            raise ActlabError(f"unknown config key {_short(key)}")
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
        raise ActlabError(f"config key {key!r} must be a string, got {_short(value)}")
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        try:
            value = float(value) if ok else value
        except OverflowError:  # an integer beyond float range
            raise ActlabError(f"config key {key!r} is too large: {_short(value)}") from None
    else:
        ok = isinstance(value, type(default))
    if not ok:
        kind = type(default).__name__
        raise ActlabError(f"config key {key!r} must be {kind}, got {_short(value)}")
    return value


def _short(value: Any, limit: int = 80) -> str:
    """repr(value) cut to one short line (a value from a file can be megabytes long)."""
    text = f"about {sci(value)}" if isinstance(value, int) and value.bit_length() > 256 else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def load_config_file(path: str | Path, *, trust_code: bool = False) -> dict[str, Any]:
    """Read a JSON or TOML config file into a plain mapping (one-line errors).

    A leading UTF-8 byte-order mark is skipped, as it is in data files. A file is not the
    command line: an `act` that is an import path (which runs code when resolved) is refused
    unless `trust_code` is true (the CLI's --trust-code).
    """
    path = Path(path)
    if not path.is_file():
        raise ActlabError(f"config file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        raise ActlabError(f"cannot read config {path}: {err.strerror or err}") from None
    text = text.removeprefix("\ufeff")
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
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ActlabError(f"malformed config {path}: {first}") from None
    except (RecursionError, MemoryError):  # arrays or tables nested thousands deep
        raise ActlabError(f"malformed config {path}: nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ActlabError(f"malformed config {path}: the top level must be a table/object")
    check_code_trust(data, str(path), trust_code)
    return data


def check_code_trust(raw: dict[str, Any], where: str, trust_code: bool) -> None:
    """Refuse an `act` import path (flat, or in [model] or [train], as merge reads them) in a
    mapping read from a file unless code is trusted; nothing is imported."""
    from actlab.activations.registry import is_import_path, trust_message

    for section in (raw, raw.get("model"), raw.get("train")):
        act = section.get("act") if isinstance(section, dict) else None
        if not trust_code and is_import_path(act):
            raise ActlabError(f"{where}: {trust_message(act.strip())}")

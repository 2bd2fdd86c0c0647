"""Validate before work: config values, sizes against memory, config and claims files, and
activations from outside, each refused in one line naming the field and the value."""

import json
import math
import os
import sys
import time

import pytest
import torch

from actlab import config as config_module
from actlab.activations import ActivationError, get_spec
from actlab.config import (
    MAX_EVAL_BATCHES, MAX_LAYERS, MAX_SEED, MAX_STEPS, ModelConfig, TrainConfig,
    load_config_file, max_threads, memory_estimate, merge, parameter_count,
)
from actlab.errors import ActlabError
from actlab.lab import user_claims
from actlab.lab.user_claims import ClaimRunsFailed, claim_folder, load_claims, run_claim

GB = 10**9
INF, NAN = float("inf"), float("nan")


@pytest.fixture
def eight_gb(monkeypatch):
    """A machine of exactly 8 GB, so that the size checks do not depend on this one."""
    monkeypatch.setattr(config_module, "machine_memory", lambda: 8 * GB)


# -- values ---------------------------------------------------------------------------------

# (overrides, the field named, the value as the message shows it)
BAD_VALUES = [
    ({"lr": INF}, "lr", "inf"),
    ({"lr": NAN}, "lr", "nan"),
    ({"lr": -INF}, "lr", "-inf"),
    ({"lr": 0}, "lr", "0.0"),
    ({"lr": 10**400}, "lr", "about 10**400"),
    ({"grad_clip": INF}, "grad_clip", "inf"),
    ({"weight_decay": NAN}, "weight_decay", "nan"),
    ({"momentum": INF}, "momentum", "inf"),
    ({"beta1": 1.0}, "beta1", "1.0"),
    ({"beta2": NAN}, "beta2", "nan"),
    ({"val_fraction": NAN}, "val_fraction", "nan"),
    ({"min_lr_ratio": INF}, "min_lr_ratio", "inf"),
    ({"mlp_ratio": INF}, "mlp_ratio", "inf"),
    ({"init_std": NAN}, "init_std", "nan"),
    ({"dropout": NAN}, "dropout", "nan"),
    ({"seed": 2**64}, "seed", str(2**64)),
    ({"seed": -1}, "seed", "-1"),
    ({"threads": 100000}, "threads", "100000"),
    ({"threads": -1}, "threads", "-1"),
    ({"eval_batches": 10**9}, "eval_batches", "1000000000"),
    ({"steps": 10**12}, "steps", "1000000000000"),
    ({"steps": 0}, "steps", "0"),
    ({"warmup_steps": MAX_STEPS + 1}, "warmup_steps", str(MAX_STEPS + 1)),
    ({"eval_every": 0}, "eval_every", "0"),
    ({"bpe_vocab": 10**9}, "bpe_vocab", "1000000000"),
    ({"n_layer": 10**12}, "n_layer", "1000000000000"),
    ({"n_head": 0}, "n_head", "0"),
    ({"data": "a\x00b"}, "data", "'a\\x00b'"),
]


@pytest.mark.parametrize("bad,name,shown", BAD_VALUES, ids=[str(b[0])[:40] for b in BAD_VALUES])
def test_each_bad_value_is_refused_naming_the_field_and_value(bad, name, shown):
    with pytest.raises(ActlabError) as err:
        merge(TrainConfig(), bad)
    message = str(err.value)
    assert message.startswith(name) or f"{name!r}" in message, message
    assert shown in message and "\n" not in message


def test_infinity_is_refused_with_the_value_in_the_message():
    with pytest.raises(ActlabError, match=r"^lr must be a finite number > 0, got inf$"):
        TrainConfig(lr=math.inf)


def test_the_bounds_themselves_are_accepted():
    cfg = TrainConfig(seed=MAX_SEED, threads=max_threads(), eval_batches=MAX_EVAL_BATCHES,
                      steps=MAX_STEPS, model=ModelConfig(n_layer=2))
    assert (cfg.seed, cfg.threads) == (2**64 - 1, max(64, 4 * os.cpu_count()))
    assert TrainConfig(threads=0).threads == 0  # 0 leaves torch's default alone
    assert ModelConfig(n_layer=MAX_LAYERS, n_embd=8, n_head=2, vocab_size=16, block_size=8)


def test_a_seed_of_64_bits_seeds_torch():
    torch.manual_seed(MAX_SEED)  # the largest accepted seed is one torch takes


# -- sizes against memory --------------------------------------------------------------------

SIZE_CASES = [
    ({"n_embd": 10**12}, "n_embd=1000000000000", "for the float32 weights alone"),
    ({"vocab_size": 10**11}, "vocab_size=100000000000", "for the float32 weights alone"),
    ({"block_size": 10**11}, "block_size=100000000000", "for the float32 weights alone"),
    ({"batch_size": 10**12}, "batch_size=1000000000000", "for one batch's activations"),
    ({"n_layer": 9000, "n_embd": 1024}, "n_layer=9000", "for the float32 weights alone"),
    ({"n_layer": 20, "n_embd": 2048}, "n_layer=20", "for weights, gradients and optimizer state"),
    ({"eval_batches": MAX_EVAL_BATCHES, "batch_size": 4096}, "eval_batches=100000",
     "for the validation batches"),
]


@pytest.mark.parametrize("bad,named,part", SIZE_CASES, ids=[str(c[0]) for c in SIZE_CASES])
def test_sizes_that_cannot_fit_are_refused_with_the_estimate(eight_gb, bad, named, part):
    with pytest.raises(ActlabError) as err:
        merge(TrainConfig(), bad)
    message = str(err.value)
    assert named in message and part in message, message
    assert message.endswith("; this machine has 8 GB of memory")


def test_the_message_gives_the_estimate():
    with pytest.raises(ActlabError) as err:
        ModelConfig(n_embd=10**12)
    # 4 layers x 12 d^2 + (256 + 128) d parameters, 4 bytes each
    assert "give about 4.8e+25 parameters, which need about 1.9e+26 bytes" in str(err.value)


def test_n_layer_of_10_to_the_12_is_refused_at_once_and_builds_nothing():
    start = time.perf_counter()
    for override in ({"n_layer": 10**12}, {"n_embd": 10**12}, {"batch_size": 10**12}):
        with pytest.raises(ActlabError):
            merge(TrainConfig(), override)
    with pytest.raises(ActlabError, match="n_layer"):
        ModelConfig(n_layer=10**12)
    assert time.perf_counter() - start < 0.1


def test_the_parameter_estimate_is_the_model_s_count_less_the_final_norm():
    from actlab.nn.gpt import GPT

    for kw in ({"n_layer": 2}, {"n_layer": 2, "act": "swiglu"}, {"n_layer": 3, "mlp_ratio": 3.0}):
        m = ModelConfig(vocab_size=50, block_size=16, n_head=2, n_embd=24, **kw)
        actual = sum(p.numel() for p in GPT(m).parameters())
        estimate = parameter_count(m, m.vocab_size)
        assert 0.98 * actual <= estimate <= actual, (kw, estimate, actual)  # a close lower bound


def test_the_default_configs_fit_and_the_estimate_adds_up():
    total, parts = memory_estimate(TrainConfig())
    assert total == sum(v[0] for v in parts.values())
    params = parameter_count(TrainConfig().model, 256)
    assert parts["weights, gradients and optimizer state"][0] == 16 * params
    assert parts["the validation batches"][0] == 24 * 8 * 16 * 128
    assert total < 1 * GB
    sgd = memory_estimate(TrainConfig(optimizer="sgd"))[1]
    assert sgd["weights, gradients and optimizer state"][0] == 8 * params


def test_an_unknown_memory_size_skips_only_the_memory_check(monkeypatch):
    monkeypatch.setattr(config_module, "machine_memory", lambda: None)
    assert TrainConfig(batch_size=10**6).batch_size == 10**6
    with pytest.raises(ActlabError, match="seed"):
        TrainConfig(seed=2**64)


# -- config files ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix,body", [(".json", '{"lr": 0.5, "n_layer": 2}'),
                                         (".toml", "lr = 0.5\nn_layer = 2\n")])
def test_a_utf8_byte_order_mark_is_accepted(tmp_path, suffix, body):
    path = tmp_path / f"c{suffix}"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    cfg = merge(TrainConfig(), load_config_file(path))
    assert (cfg.lr, cfg.model.n_layer) == (0.5, 2)


@pytest.mark.parametrize("suffix,body", [
    (".json", "[" * 100_000 + "]" * 100_000),
    (".json", '{"a": ' * 100_000 + "1" + "}" * 100_000),
    (".toml", "a = " + "[" * 100_000 + "]" * 100_000 + "\n"),
])
def test_a_file_nested_too_deep_is_named_in_one_line(tmp_path, suffix, body):
    path = tmp_path / f"deep{suffix}"
    path.write_text(body)
    with pytest.raises(ActlabError) as err:
        load_config_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_json_infinity_in_a_config_file_is_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"lr": Infinity}')
    with pytest.raises(ActlabError, match="^lr must be a finite number > 0, got inf$"):
        merge(TrainConfig(), load_config_file(path))


@pytest.fixture
def sentinel_module(tmp_path, monkeypatch):
    """A module that leaves a file behind when imported: importing it is running its code."""
    (tmp_path / "sentinel_act.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(tmp_path / 'IMPORTED')!r}).write_text('ran')\n"
        "import torch\n"
        "def act(x):\n    return torch.tanh(x)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "IMPORTED"
    sys.modules.pop("sentinel_act", None)


@pytest.mark.parametrize("body", ['{"act": "sentinel_act:act"}', '{"model": {"act": "sentinel_act:act"}}',
                                  '{"train": {"act": " sentinel_act:act "}}'])
def test_an_import_path_in_a_config_file_needs_trust(tmp_path, sentinel_module, body):
    path = tmp_path / "c.json"
    path.write_text(body)
    with pytest.raises(ActlabError) as err:
        load_config_file(path)
    assert str(err.value) == (f"{path}: activation 'sentinel_act:act' is an import path, which runs "
                              "code; pass --trust-code to allow it")
    assert not sentinel_module.exists() and "sentinel_act" not in sys.modules
    cfg = merge(TrainConfig(), load_config_file(path, trust_code=True))
    assert cfg.model.act.strip() == "sentinel_act:act" and sentinel_module.read_text() == "ran"


def test_get_spec_without_trust_imports_nothing(sentinel_module):
    with pytest.raises(ActivationError, match="is an import path, which runs code; pass --trust-code"):
        get_spec("sentinel_act:act", trust_code=False)
    assert not sentinel_module.exists()
    assert get_spec("gelu", trust_code=False).name == "gelu"  # names and formulas need no trust
    assert get_spec("x * tanh(x)", trust_code=False).name == "x * tanh(x)"


# -- activations from outside ----------------------------------------------------------------

DANGEROUS = ["os:system", "builtins:eval", "builtins:exec", "builtins:open", "subprocess:run",
             "shutil:rmtree", "sys:exit", "importlib:import_module", "pickle:loads",
             "socket:socket", "os.path:exists", "posix:system", "torch.hub:load", "builtins:print"]


@pytest.mark.parametrize("path", DANGEROUS)
def test_dangerous_import_paths_are_refused_before_any_call(monkeypatch, path):
    calls = []
    monkeypatch.setattr("os.system", lambda *a: calls.append(a))
    with pytest.raises(ActivationError) as err:
        get_spec(path)
    assert "process or the machine" in str(err.value) and "\n" not in str(err.value)
    assert calls == []


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_acts.py").write_text('''
import os
import torch
from os import system as reexported_system
from builtins import eval as reexported_eval

def good(x):
    return x * torch.sigmoid(x)

def a_list(x):
    return [1.0]

def halves(x):
    return x[..., : x.shape[-1] // 2]

def doubles(x):
    return x.double()

def nan_out(x):
    return torch.log(x)

def raises(x):
    raise KeyError("no tensors here")

def inplace(x):
    return x.mul_(2)

def detached(x):
    return x.detach() * 2

def int_out(x):
    return x.long()

def needs_two(a, b):
    return a + b

environ_clear = os.environ.clear
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("user_acts", None)


@pytest.mark.parametrize("attr,says", [
    ("reexported_system", "comes from the module 'posix'"),
    ("reexported_eval", "a Python builtin that runs code"),
    ("environ_clear", "comes from the module 'os'"),
    ("a_list", "it returned an object of type list, not a tensor"),
    ("halves", "it returned a torch.float32 tensor of shape (2, 16); an activation must return"),
    ("doubles", "it returned a torch.float64 tensor of shape (2, 32)"),
    ("int_out", "it returned a torch.int64 tensor"),
    ("nan_out", "it returns values that are not finite (nan)"),
    ("raises", "it raised KeyError: 'no tensors here'"),
    ("inplace", "it changed its input in place"),
    ("detached", "its output does not depend on x through autograd"),
    ("needs_two", "it raised TypeError"),
])
def test_import_paths_are_probed_when_named(user_module, attr, says):
    with pytest.raises(ActivationError) as err:
        get_spec(f"user_acts:{attr}")
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_good_import_path_passes_the_probe(user_module):
    spec = get_spec("user_acts:good")
    x = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(spec.factory()(x), torch.nn.functional.silu(x))


@pytest.mark.parametrize("text,says", [
    ("max(x, 1e39)", "the number 1e+39 (beyond float32's largest, 3.4e+38)"),
    ("x * 2 ** 200", "beyond float32's range"),
    ("exp(exp(x))", "not finite (inf)"),
    ("x ** 100", "not finite (inf)"),
    ("log(x)", "not finite (nan)"),
    ("sqrt(x)", "not finite (nan)"),
])
def test_formulas_float32_cannot_hold_are_refused(text, says):
    with pytest.raises(ActivationError) as err:
        get_spec(text)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_formulas_within_float32_are_accepted():
    for text in ("max(x, 1e38)", "1 / x", "exp(x)", "x * 1e-40"):
        assert get_spec(text).fn(torch.ones(3)).isfinite().all()


# -- claims files ----------------------------------------------------------------------------

CLAIM = 'id = "{id}"\ntext = "t"\ncandidate = "relu"\nbaseline = "gelu"\n'


def _claims(tmp_path, body, name="claims.toml"):
    path = tmp_path / name
    path.write_text(body)
    return path


@pytest.mark.parametrize("extra,says", [
    ("config = 5\n", "'config' must be a table of config keys, got 5"),
    ("margin = nan\n", "'margin' must be a finite number from 0 to 1e+06 (nats), got nan"),
    ("margin = inf\n", "'margin' must be a finite number from 0 to 1e+06 (nats), got inf"),
    ("margin = -0.5\n", "'margin' must be a finite number from 0 to 1e+06 (nats), got -0.5"),
    ("margin = 9223372036854775807\n", "got 9223372036854775807"),
    ('margin = "big"\n', "'margin' must be a finite number from 0 to 1e+06 (nats), got 'big'"),
    ("seeds = true\n", "'seeds' must be a whole number from 2 to 100, got True"),
    ("seeds = 1000000\n", "'seeds' must be a whole number from 2 to 100, got 1000000"),
    ("steps = 1000000000000\n", "'steps' must be a whole number from 1 to 100000000"),
    ("steps = 2.5\n", "'steps' must be a whole number"),
    ("data = 7\n", "'data' must be the path of a .txt file or folder, got 7"),
    ('data = "/no/such/file.txt"\n', "'data': /no/such/file.txt: no such file or folder"),
    ("what = 1\n", "unknown key(s) 'what'"),
    ("[config]\nact = \"tanh\"\n", "'config' may not set 'act'"),
    ("[config]\nseed = 3\n", "'config' may not set 'seed'"),
    ("[config.model]\nact = \"tanh\"\n", "'config' may not set 'act'"),
    ("[config]\nlr = inf\n", "'config': lr must be a finite number > 0, got inf"),
    ("[config]\nn_layer = 1000000000000\n", "'config': n_layer must be between 1 and 10000"),
    ("[config]\nthreads = 100000\n", "'config': threads must be between 0 and"),
])
def test_every_claim_field_is_checked_naming_file_claim_and_field(tmp_path, extra, says):
    path = _claims(tmp_path, "[[claim]]\n" + CLAIM.format(id="c1")
                   + extra.replace("[config", "[claim.config"))
    with pytest.raises(ActlabError) as err:
        load_claims(path)
    message = str(err.value)
    assert message.startswith(f"{path}: claim 'c1': ") and says in message, message
    assert "\n" not in message


@pytest.mark.parametrize("claim_id", ["z/../../../escaped", "..", "a..b", "a\x00b", "/abs", "-x",
                                      "", "x" * 65, "a b", "a\\b"])
def test_ids_that_could_leave_the_folder_are_refused(tmp_path, claim_id):
    path = _claims(tmp_path, "[[claim]]\n" + CLAIM.format(id=claim_id.replace("\\", "\\\\")
                                                                   .replace("\x00", "\\u0000")))
    with pytest.raises(ActlabError) as err:
        load_claims(path)
    assert str(err.value).startswith(f"{path}: claim 1: 'id' must be 1 to 64 letters")
    assert "\n" not in str(err.value) and "\x00" not in str(err.value)


def test_a_non_string_id_and_a_bad_top_level_are_refused(tmp_path):
    with pytest.raises(ActlabError, match="'id' must be .* got 5"):
        load_claims(_claims(tmp_path, "[[claim]]\nid = 5\n"))
    with pytest.raises(ActlabError, match="unknown top-level key"):
        load_claims(_claims(tmp_path, "extra = 1\n[[claim]]\n" + CLAIM.format(id="a")))
    with pytest.raises(ActlabError, match="expected one or more"):
        load_claims(_claims(tmp_path, "claim = 5\n"))


def test_a_claim_s_data_is_checked_when_the_file_loads(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    body = "[[claim]]\n" + CLAIM.format(id="a") + f'data = "{folder}"\n'
    with pytest.raises(ActlabError, match=r"claim 'a': 'data': .*empty"):
        load_claims(_claims(tmp_path, body))
    (folder / "t.txt").write_text("some text " * 100)
    (claim,) = load_claims(_claims(tmp_path, body))
    assert claim["overrides"]["data"] == str(folder)


def test_an_import_path_in_a_claims_file_needs_trust(tmp_path, sentinel_module):
    body = "[[claim]]\n" + CLAIM.format(id="a").replace('"relu"', '"sentinel_act:act"')
    path = _claims(tmp_path, body)
    with pytest.raises(ActlabError) as err:
        load_claims(path)
    assert str(err.value) == (f"{path}: claim 'a': 'candidate': activation 'sentinel_act:act' is "
                              "an import path, which runs code; pass --trust-code to allow it")
    assert not sentinel_module.exists()
    (claim,) = load_claims(path, trust_code=True)
    assert claim["candidate"] == "sentinel_act:act" and sentinel_module.exists()


def test_a_candidate_that_cannot_take_a_tensor_is_refused_at_load(tmp_path):
    body = "[[claim]]\n" + CLAIM.format(id="a").replace('"relu"', '"math:sqrt"')
    with pytest.raises(ActlabError, match="claim 'a': 'candidate': activation 'math:sqrt': on the probe"):
        load_claims(_claims(tmp_path, body), trust_code=True)


def test_claim_folders_stay_inside_the_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert claim_folder(out, "mine-1.v2") == (out / "user-mine-1.v2").resolve()
    with pytest.raises(ActlabError):
        claim_folder(out, "z/../../../escaped")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "user-linked").symlink_to(elsewhere)
    with pytest.raises(ActlabError, match="outside"):
        claim_folder(out, "linked")


def _fake_grid(outcomes):
    """run_grid's results for a 2-seed claim: outcomes[(act, seed)] = loss or 'error'."""
    def run_grid(study, jobs, fn, out_dir, progress=True):
        results = []
        for job in jobs:
            value = outcomes[(job["act"], job["seed"])]
            if value == "error":
                results.append({"id": "x", "params": job, "outcome": "error",
                                "error": "TypeError: cannot take a tensor"})
            else:
                results.append({"id": "x", "params": job, "outcome": "completed",
                                "final_val_loss": value})
        return results
    return run_grid


def _claim(tmp_path):
    (claim,) = load_claims(_claims(tmp_path, "[[claim]]\n" + CLAIM.format(id="c") + "seeds = 2\n"))
    return claim


def test_a_candidate_that_errors_in_every_run_gets_no_verdict(tmp_path, monkeypatch):
    monkeypatch.setattr(user_claims, "run_grid", _fake_grid(
        {("relu", 0): "error", ("relu", 1): "error", ("gelu", 0): 2.0, ("gelu", 1): 2.1}))
    with pytest.raises(ClaimRunsFailed) as err:
        run_claim(_claim(tmp_path), "smoke", tmp_path / "out", progress=False)
    assert str(err.value) == ("claim 'c': 2 of 4 runs failed (2 of 2 candidate runs), so there is "
                              "no verdict; first, relu seed 0: TypeError: cannot take a tensor")


def test_one_errored_run_is_not_counted_as_a_divergence(tmp_path, monkeypatch):
    monkeypatch.setattr(user_claims, "run_grid", _fake_grid(
        {("relu", 0): 1.0, ("relu", 1): "error", ("gelu", 0): 2.0, ("gelu", 1): 2.1}))
    with pytest.raises(ClaimRunsFailed, match="1 of 4 runs failed"):
        run_claim(_claim(tmp_path), "smoke", tmp_path / "out", progress=False)


def test_a_diverged_candidate_is_still_a_result(tmp_path, monkeypatch):
    monkeypatch.setattr(user_claims, "run_grid", _fake_grid(
        {("relu", 0): NAN, ("relu", 1): 2.0, ("gelu", 0): 2.0, ("gelu", 1): 2.1}))
    verdict = run_claim(_claim(tmp_path), "smoke", tmp_path / "out", progress=False)
    assert verdict.verdict == "NOT SUPPORTED"
    assert verdict.evidence["candidate_only_diverged"] == 1


def test_run_claim_refuses_an_unsafe_id_or_folder(tmp_path):
    claim = {**_claim(tmp_path), "id": "../x"}
    with pytest.raises(ActlabError, match="'id' must be"):
        run_claim(claim, "smoke", tmp_path / "out", progress=False)
    with pytest.raises(ActlabError, match="must not contain '..'"):
        run_claim(_claim(tmp_path), "smoke", tmp_path / "out" / ".." / "..", progress=False)


def test_a_checked_claim_is_plain_json(tmp_path):
    claim = _claim(tmp_path)
    assert json.loads(json.dumps(claim))["overrides"]["steps"] == 200

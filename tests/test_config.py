"""Config validation and JSON/TOML round-trips."""

import json

import pytest

from actlab.config import ModelConfig, TrainConfig, load_config_file, merge
from actlab.errors import ActlabError


def test_json_round_trip_and_hash():
    cfg = TrainConfig(model=ModelConfig(act="swiglu", n_layer=3), seed=7)
    again = TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and again.hash() == cfg.hash()
    assert merge(cfg, {"seed": 8}).hash() != cfg.hash()


def test_toml_file_with_tables(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\nact = "tanh"\nn_layer = 2\n[train]\nsteps = 9\nlr = 1\n')
    cfg = merge(TrainConfig(), load_config_file(path))
    assert (cfg.model.act, cfg.model.n_layer, cfg.steps, cfg.lr) == ("tanh", 2, 9, 1.0)


@pytest.mark.parametrize("bad", [
    {"steps": -1}, {"n_embd": 0}, {"n_embd": 30, "n_head": 4}, {"act": "gleu"},
    {"steps": "ten"}, {"residual": 1}, {"no_such_key": 1}, {"norm": "batchnorm"},
    {"dropout": 1.5}, {"model": 3},
])
def test_bad_values_raise_one_line_errors(bad):
    with pytest.raises(ActlabError) as err:
        merge(TrainConfig(), bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text,suffix", [("{not json", ".json"), ("a = = 1", ".toml"), ("[1, 2]", ".json")])
def test_malformed_files(tmp_path, text, suffix):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    with pytest.raises(ActlabError):
        load_config_file(path)


def test_compile_auto_follows_the_run_length():
    from actlab.config import COMPILE_AUTO_STEPS

    assert TrainConfig().compile == "auto" and not TrainConfig().compile_wanted()
    assert not TrainConfig(steps=COMPILE_AUTO_STEPS - 1).compile_wanted()
    assert TrainConfig(steps=COMPILE_AUTO_STEPS).compile_wanted()
    assert not TrainConfig(steps=10 * COMPILE_AUTO_STEPS, compile="off").compile_wanted()
    assert TrainConfig(steps=5, compile="on").compile_wanted()


def test_compile_accepts_the_old_booleans_and_rejects_other_words():
    assert TrainConfig(compile=True).compile == "on"
    assert merge(TrainConfig(), {"compile": False}).compile == "off"
    assert merge(TrainConfig(), {"train": {"compile": "on"}}).compile == "on"
    with pytest.raises(ActlabError, match="compile"):
        merge(TrainConfig(), {"compile": "sometimes"})
    with pytest.raises(ActlabError, match="compile"):
        merge(TrainConfig(), {"compile": 1})

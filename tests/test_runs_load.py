"""load_run: a trained run folder rebuilt from its files alone (weights, config, tokenizer),
the same logits bitwise, and one-line errors for every folder that cannot be loaded."""

import json
import shutil

import pytest
import torch

from actlab.config import TrainConfig
from actlab.data.tokenizer import FileTokenizer
from actlab.errors import ActlabError
from actlab.runs import LoadedRun, load_run, sample
from actlab.training.loop import train

from conftest import tiny_train
from test_tokenizer_files import TEXT, UNSEEN, user_tokenizer


def one_line(excinfo, *needles):
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, ActlabError) and msg and "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def small(corpus, **kw):
    return tiny_train(**{"steps": 3, "eval_every": 3, "n_layer": 1, "n_embd": 16, "n_head": 2,
                         "block_size": 16, "batch_size": 4, "data": str(corpus), **kw})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    return out, train(small(corpus), out, progress=False)


def copy_of(trained, tmp_path):
    return shutil.copytree(trained[0], tmp_path / "copy")


def test_load_run_gives_the_trained_model_bitwise(trained):
    out, result = trained
    state = torch.get_rng_state()
    run = load_run(out)
    assert torch.equal(torch.get_rng_state(), state)  # building the model drew nothing
    assert isinstance(run, LoadedRun) and run.path == out and not run.model.training
    assert run.model.lm_head.weight is run.model.transformer.wte.weight  # the tie rebuilt
    x = torch.randint(0, run.config.model.vocab_size, (3, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(run.model(x)[0], result.model(x)[0])
    saved = json.loads((out / "config.json").read_text())
    assert run.config.to_dict() == TrainConfig.from_dict(saved).to_dict()
    assert run.summary["outcome"] == "completed" and run.summary["steps"] == 3
    assert run.tokenizer.kind == "char" and run.tokenizer.vocab_size == run.config.model.vocab_size
    chars = sorted(set(TEXT[:int(len(TEXT) * 0.9)]))  # the training split's, in code-point order
    assert run.tokenizer.encode("winter") == [chars.index(c) + 1 for c in "winter"]
    assert run.tokenizer.encode("Zé") == [0, 0]  # unseen characters: the unknown id


def test_a_schema_version_key_is_ignored(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({"schema_version": 1, **raw}))
    assert load_run(folder).config.to_dict() == TrainConfig.from_dict(raw).to_dict()


def test_sample_is_reproducible_and_continues_the_prompt(trained):
    run = load_run(trained[0])
    a = sample(run, prompt="Now is", tokens=25, seed=7)
    assert a == sample(trained[0], prompt="Now is", tokens=25, seed=7)  # a path loads the run
    assert a != sample(run, prompt="Now is", tokens=25, seed=8)
    assert len(a) == 25  # char tokens: one character each, prompt not included
    greedy = sample(run, prompt="Now is", tokens=10, temperature=0)
    ids = run.tokenizer.encode("Now is")
    with torch.no_grad():
        for _ in range(10):
            ids.append(int(run.model(torch.tensor([ids[-16:]]))[0][0, -1].argmax()))
    assert greedy == run.tokenizer.decode(ids[6:])
    # an empty prompt starts after the newline token, which is not returned
    newline = run.tokenizer.encode("\n")
    empty = sample(run, tokens=10, temperature=0)
    ids = list(newline)
    with torch.no_grad():
        for _ in range(10):
            ids.append(int(run.model(torch.tensor([ids]))[0][0, -1].argmax()))
    assert empty == run.tokenizer.decode(ids[1:])


def test_a_tokenizer_file_run_is_self_contained(corpus, tmp_path):
    source = tmp_path / "mine" / "tokenizer.json"
    source.parent.mkdir()
    hf = user_tokenizer(source)
    out = tmp_path / "run"
    result = train(small(corpus, tokenizer=str(source)), out, progress=False)
    assert result.model.config.vocab_size == hf.get_vocab_size() == 290
    assert (out / "tokenizer.json").is_file() and not (out / "vocab.json").exists()
    shutil.rmtree(source.parent)  # the original is gone: the run keeps its own copy
    run = load_run(out)
    assert isinstance(run.tokenizer, FileTokenizer) and run.config.tokenizer == str(out / "tokenizer.json")
    assert run.tokenizer.encode(UNSEEN) == hf.encode(UNSEEN, add_special_tokens=False).ids
    x = torch.tensor([hf.encode(TEXT[:40], add_special_tokens=False).ids[:16]])
    with torch.no_grad():
        assert torch.equal(run.model(x)[0], result.model(x)[0])


def test_an_older_run_without_a_tokenizer_file(trained, corpus, tmp_path):
    folder = copy_of(trained, tmp_path)
    (folder / "vocab.json").unlink()
    run = load_run(folder)  # char: rebuilt from the corpus, which is unchanged
    assert run.tokenizer.encode(TEXT[:50] + UNSEEN) == load_run(trained[0]).tokenizer.encode(TEXT[:50] + UNSEEN)
    env = json.loads((folder / "env.json").read_text())
    (folder / "env.json").write_text(json.dumps({**env, "corpus_hash": "0" * 64}))
    with pytest.raises(ActlabError) as e:
        load_run(folder)
    one_line(e, "older actlab", "'text.txt'", "--tokenizer char", "changed")


def test_folders_that_cannot_be_loaded_are_one_line_errors(trained, tmp_path):
    for path, needle in [(tmp_path / "nowhere", "does not exist"), (trained[0] / "config.json", "is a file")]:
        with pytest.raises(ActlabError) as e:
            load_run(path)
        one_line(e, needle, "run folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ActlabError) as e:
        load_run(tmp_path / "empty")
    one_line(e, "no config.json")
    folder = copy_of(trained, tmp_path)
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").unlink()
    with pytest.raises(ActlabError) as e:
        load_run(folder)
    one_line(e, "no model.safetensors", "may not have finished", "outcome 'completed'")
    (folder / "summary.json").write_text(json.dumps({"outcome": "error", "error": "OSError: disk"}))
    with pytest.raises(ActlabError) as e:
        load_run(folder)
    one_line(e, "outcome 'error': OSError: disk")
    (folder / "model.safetensors").write_bytes(weights[:100])
    with pytest.raises(ActlabError) as e:
        load_run(folder)
    one_line(e, "cannot be read as safetensors")


@pytest.mark.parametrize("change, needle", [({"n_layer": 2}, "Missing key"), ({"n_embd": 32}, "size mismatch")])
def test_weights_that_do_not_match_the_config(trained, tmp_path, change, needle):
    folder = copy_of(trained, tmp_path)
    raw = json.loads((folder / "config.json").read_text())
    raw["model"].update(change)
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ActlabError) as e:
        load_run(folder)
    one_line(e, "does not match config.json", needle)


def test_a_vocabulary_that_does_not_match_the_model(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    (folder / "vocab.json").write_text(json.dumps({"schema_version": 1, "kind": "char", "chars": ["a", "b"]}))
    with pytest.raises(ActlabError) as e:
        load_run(folder)
    one_line(e, "3 ids", "vocab_size")


def test_an_imported_activation_needs_trust(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    raw = json.loads((folder / "config.json").read_text())
    raw["model"]["act"] = "torch.nn.functional:gelu"
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ActlabError) as e:
        load_run(folder)
    one_line(e, "config.json")
    assert load_run(folder, trust_code=True).config.model.act == "torch.nn.functional:gelu"

"""`actlab export DIR --to hf --out OUT`: a trained run folder that transformers loads."""
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from actlab.cli import main  # noqa: E402
from actlab.config import TrainConfig  # noqa: E402
from actlab.hf import EXPORT_FILE  # noqa: E402
from actlab.training.loop import train  # noqa: E402

runs = pytest.importorskip("actlab.runs", reason="actlab.runs.load_run is not there yet")


def tiny(**model) -> TrainConfig:
    return TrainConfig.from_dict({"model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16,
                                            **model},
                                  "steps": 2, "batch_size": 2, "eval_every": 2, "eval_batches": 1,
                                  "warmup_steps": 0, "compile": "off"})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "gelu"
    train(tiny(act="gelu_tanh"), out, progress=False)
    return out


def test_export_loads_in_transformers_with_the_same_logits(run_dir, tmp_path, capsys):
    out = tmp_path / "hf"
    assert main(["export", str(run_dir), "--to", "hf", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "activation_function='gelu_new'" in printed and "from_pretrained" in printed
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    run = runs.load_run(run_dir)
    idx = torch.randint(0, run.config.model.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (run.model(idx)[0] - hf(idx).logits).abs().max().item()
    assert diff < 1e-4
    # greedy decoding in transformers gives the tokens actlab's own generate gives
    prompt = idx[:1, :4]
    with torch.no_grad():
        theirs = hf.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert theirs.tolist() == runs.generate(run.model, prompt, 6, temperature=0.0).tolist()
    record = json.loads((out / EXPORT_FILE).read_text())
    assert record["schema_version"] == 1
    assert record["source"]["run"] == str(run_dir.resolve())
    assert record["source"]["config_hash"] == run.config.hash()
    assert record["tokenizer"] is None  # a char tokenizer has no Hugging Face form


def test_existing_out_needs_overwrite(run_dir, tmp_path, capsys):
    out = tmp_path / "hf"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", str(run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pass --overwrite" in err
    assert main(["export", str(run_dir), "--out", str(out), "--overwrite"]) == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert main(["export", str(run_dir), "--out", str(other), "--overwrite"]) == 2
    assert "is not an actlab export" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "x"


def test_not_a_run_folder(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unsupported_config_is_one_line(tmp_path, capsys):
    run = tmp_path / "rms"
    train(tiny(norm="rmsnorm"), run, progress=False)
    assert main(["export", str(run), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("actlab export: error: norm 'rmsnorm' cannot be exported")
    assert "\n" not in err and not (tmp_path / "o").exists()


def test_missing_transformers_names_the_extra(run_dir, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now fails
    assert main(["export", str(run_dir), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'actlab[hf]'" in err and err.count("\n") == 1


@pytest.mark.slow
def test_a_tokenizer_json_travels_with_the_export(tmp_path, capsys):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["to be or not to be, that is the question"] * 20, trainer)
    path = tmp_path / "tok.json"
    tok.save(str(path))
    run = tmp_path / "bpe-run"
    cfg = tiny()
    cfg.tokenizer = str(path)
    train(TrainConfig.from_dict(cfg.to_dict()), run, progress=False)
    out = tmp_path / "hf"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert json.loads((out / EXPORT_FILE).read_text())["tokenizer"] == "tokenizer.json"
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "to be, or not"
    assert hf_tok(text)["input_ids"] == runs.load_run(run).tokenizer.encode(text)

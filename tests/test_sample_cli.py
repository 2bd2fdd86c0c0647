"""`actlab sample DIR`: prompt + generated text on stdout, one-line errors with exit 2, and
`actlab train --tokenizer FILE` giving a run folder that samples on its own."""

import json
import shutil

import pytest

from actlab.cli import main
from actlab.runs import load_run, sample
from actlab.training.loop import train

from test_runs_load import small
from test_tokenizer_files import TEXT, user_tokenizer


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    train(small(corpus), out, progress=False)
    return out


def test_sample_prints_the_prompt_and_its_continuation(capsys, run_dir):
    code, out, err = run_cli(capsys, "sample", run_dir, "--prompt", "Now is", "--tokens", 30,
                             "--seed", 4, "--temperature", 0.7, "--top-k", 5)
    assert code == 0, err
    expected = sample(load_run(run_dir), prompt="Now is", tokens=30, temperature=0.7, seed=4, top_k=5)
    assert out == "Now is" + expected + "\n" and len(expected) == 30
    again = run_cli(capsys, "sample", run_dir, "--prompt", "Now is", "--tokens", 30, "--seed", 4,
                    "--temperature", 0.7, "--top-k", 5)
    assert again[1] == out  # the same seed, the same text


def test_sample_defaults_and_greedy(capsys, run_dir):
    code, out, _ = run_cli(capsys, "sample", run_dir)
    assert code == 0
    assert out == sample(load_run(run_dir)) + "\n"  # 200 tokens at 0.8, seed 0, no prompt
    assert len(out) == 201
    code, greedy, _ = run_cli(capsys, "sample", run_dir, "--temperature", 0, "--tokens", 12, "--seed", 1)
    _, greedy2, _ = run_cli(capsys, "sample", run_dir, "--temperature", 0, "--tokens", 12, "--seed", 2)
    assert code == 0 and greedy == greedy2 == sample(load_run(run_dir), tokens=12, temperature=0) + "\n"


def test_sample_help_names_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    out = capsys.readouterr().out
    for text in ("DIR", "--prompt", "default: 200", "default: 0.8", "--top-k", "--seed", "--device"):
        assert text in out, text


def test_sample_errors_are_one_line(capsys, run_dir, tmp_path):
    code, _, err = run_cli(capsys, "sample", tmp_path / "nowhere")
    assert_one_line_error(code, err, "actlab sample: error:", "does not exist")
    folder = shutil.copytree(run_dir, tmp_path / "unfinished")
    (folder / "model.safetensors").unlink()
    (folder / "summary.json").unlink()
    code, _, err = run_cli(capsys, "sample", folder)
    assert_one_line_error(code, err, "no model.safetensors", "may not have finished")
    for bad in (["--tokens", "0"], ["--temperature", "-1"], ["--top-k", "0"], ["--seed", "x"]):
        with pytest.raises(SystemExit) as e:
            main(["sample", str(run_dir), *bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and bad[0] in err, err
    code, _, err = run_cli(capsys, "sample", run_dir, "--seed", 2**64)
    assert_one_line_error(code, err, "seed")


def test_train_with_a_tokenizer_file_then_sample(capsys, corpus, tmp_path):
    source = tmp_path / "tokenizer.json"
    hf = user_tokenizer(source)
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--data", corpus, "--tokenizer", source, "--steps", 3,
                             "--eval-every", 3, "--n-layer", 1, "--n-embd", 16, "--n-head", 2,
                             "--block-size", 16, "--batch-size", 4, "--device", "cpu",
                             "--out", out_dir, "--quiet")
    assert code == 0, err
    assert json.loads((out_dir / "config.json").read_text())["tokenizer"] == str(source)
    assert (out_dir / "tokenizer.json").read_text() == hf.to_str()
    code, out, err = run_cli(capsys, "sample", out_dir, "--prompt", "And all", "--tokens", 8)
    assert code == 0, err
    run = load_run(out_dir)
    assert out == "And all" + sample(run, prompt="And all", tokens=8) + "\n"
    assert run.tokenizer.kind == "file" and run.config.model.vocab_size == 290
    code, _, err = run_cli(capsys, "train", "--data", corpus, "--tokenizer", tmp_path / "no.json",
                           "--steps", 1)
    assert_one_line_error(code, err, "actlab train: error: unknown tokenizer", "no such file", "tokenizer.json")

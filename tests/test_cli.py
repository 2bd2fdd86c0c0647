"""The command line as a user meets it: tables, run folders, one-line errors with exit 2."""

import json
import os
import subprocess
import sys

import pytest

from actlab.cli import main

TEXT = "To be, or not to be, that is the question. " * 40


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err):
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_acts_json_lists_every_activation(capsys):
    code, out, _ = run_cli(capsys, "acts", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert {"sigmoid", "sigmoid_centered", "gelu", "swiglu", "relu2"} <= set(rows)
    assert rows["sigmoid"]["max_abs_grad"] == pytest.approx(0.25, abs=1e-3)
    assert rows["swiglu"]["gated"] is True


def test_acts_table(capsys):
    code, out, _ = run_cli(capsys, "acts")
    assert code == 0 and "sigmoid_centered" in out and "saturated" in out


def test_train_writes_a_run_folder(capsys, tmp_path):
    data = tmp_path / "t.txt"
    data.write_text(TEXT)
    out_dir = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", "--data", str(data), "--act", "x * sigmoid(1.702 * x)",
                           "--steps", "6", "--eval-every", "3", "--n-layer", "1", "--n-embd", "16",
                           "--n-head", "2", "--block-size", "16", "--batch-size", "4",
                           "--threads", "2", "--out", str(out_dir), "--quiet")
    assert code == 0, out
    assert "outcome=completed" in out
    for name in ("config.json", "env.json", "metrics.jsonl", "model.safetensors"):
        assert (out_dir / name).is_file()
    cfg = json.loads((out_dir / "config.json").read_text())
    assert cfg["model"]["act"] == "x * sigmoid(1.702 * x)" and cfg["steps"] == 6
    assert cfg["compile"] == "auto"
    env = json.loads((out_dir / "env.json").read_text())
    assert env["compile"] is False  # 6 steps: auto leaves it eager
    from actlab.training import allocator

    kept = allocator._glibc() is not None and os.environ.get(allocator.ENV, "") in ("", "keep")
    assert env["allocator"] == ("glibc-keep-freed" if kept else "system")  # the CLI set it up


def test_config_file_and_flag_precedence(capsys, tmp_path):
    data = tmp_path / "t.txt"
    data.write_text(TEXT)
    conf = tmp_path / "c.toml"
    conf.write_text(f'data = "{data}"\nsteps = 50\n[model]\nn_layer = 1\nn_embd = 16\nn_head = 2\nblock_size = 16\n')
    code, out, _ = run_cli(capsys, "train", "--config", str(conf), "--steps", "2", "--batch-size", "2",
                           "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["steps"] == 2 and cfg["model"]["n_layer"] == 1


def test_an_import_path_in_a_config_file_needs_trust_code(capsys, tmp_path):
    data = tmp_path / "t.txt"
    data.write_text(TEXT)
    conf = tmp_path / "c.toml"
    conf.write_text(f'data = "{data}"\nact = "torch.nn.functional:gelu"\n[model]\nn_layer = 1\n'
                    'n_embd = 16\nn_head = 2\nblock_size = 16\n')
    argv = ["train", "--config", str(conf), "--steps", "2", "--batch-size", "2", "--quiet"]
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err)
    assert "import path" in err and "--trust-code" in err and out == ""
    code, out, _ = run_cli(capsys, *argv, "--trust-code")
    assert code == 0 and "act=torch.nn.functional:gelu" in out
    # on the command line an import path is the user's own choice: no flag needed
    code, out, _ = run_cli(capsys, "train", "--data", str(data), "--act", "torch.nn.functional:gelu",
                           "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "16",
                           "--steps", "2", "--batch-size", "2", "--quiet")
    assert code == 0


def _bad_inputs(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bin.txt").write_bytes(b"abc\x00\x01\x02" * 50)
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9 \xff\xfe" * 50)
    (tmp_path / "short.txt").write_text("too short")
    (tmp_path / "bad.json").write_text("{steps: 3")
    (tmp_path / "ok.txt").write_text(TEXT)
    ok = str(tmp_path / "ok.txt")
    return {
        "missing path": ["--data", str(tmp_path / "nope.txt")],
        "empty file": ["--data", str(tmp_path / "empty.txt")],
        "binary file": ["--data", str(tmp_path / "bin.txt")],
        "non-utf8 file": ["--data", str(tmp_path / "latin.txt")],
        "shorter than a context": ["--data", str(tmp_path / "short.txt")],
        "unknown activation": ["--data", ok, "--act", "gleu"],
        "hostile formula": ["--data", ok, "--act", "__import__('os').system('true')"],
        "malformed config": ["--data", ok, "--config", str(tmp_path / "bad.json")],
        "missing config": ["--data", ok, "--config", str(tmp_path / "none.toml")],
        "negative size": ["--data", ok, "--n-layer", "-2"],
        "zero steps": ["--data", ok, "--steps", "0"],
        "not a number": ["--data", ok, "--lr", "fast"],
        "unknown compile choice": ["--data", ok, "--compile", "sometimes"],
    }


def test_bad_input_gives_one_line_error_and_exit_2(capsys, tmp_path):
    for case, argv in _bad_inputs(tmp_path).items():
        try:
            code, _, err = run_cli(capsys, "train", "--quiet", "--steps", "1", *argv)
        except SystemExit as exc:  # argparse type errors exit from inside parse_args
            code, err = exc.code, capsys.readouterr().err
        assert_one_line_error(code, err), case
        assert err.strip(), case


def test_unknown_activation_suggests_names(capsys, tmp_path):
    argv = _bad_inputs(tmp_path)["unknown activation"]
    _, _, err = run_cli(capsys, "train", "--quiet", *argv)
    assert "gelu" in err and "did you mean" in err


def test_real_process_exit_code_and_stderr(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "actlab", "train", "--data", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_help_explains_units_and_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    for text in ("context length in tokens", "default: 200", "sequences per step", "--tokenizer"):
        assert text in out


def test_activation_lists_keep_formulas_with_commas_whole():
    from actlab.lab.api import split_top_level

    assert split_top_level("gelu, max(x, 0),swiglu") == ["gelu", "max(x, 0)", "swiglu"]
    assert split_top_level("x * sigmoid(1.702 * x)") == ["x * sigmoid(1.702 * x)"]


def test_train_flags_build_a_mixture_of_experts(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", "--ffn", "moe", "--router", "sigmoid", "--n-experts", "4",
                             "--top-k", "2", "--n-layer", "1", "--n-embd", "32", "--n-head", "2",
                             "--block-size", "16", "--steps", "2", "--batch-size", "2", "--quiet",
                             "--out", str(tmp_path / "r"))
    assert code == 0, err
    model = json.loads((tmp_path / "r" / "config.json").read_text())["model"]
    assert (model["ffn"], model["router"], model["n_experts"], model["top_k"]) == ("moe", "sigmoid", 4, 2)
    code, _, err = run_cli(capsys, "train", "--ffn", "moe", "--n-experts", "4", "--top-k", "5")
    assert_one_line_error(code, err)
    assert "top_k must be between 1 and 4, got 5" in err

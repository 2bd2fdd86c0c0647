"""Studies and audits on the user's text: `--data PATH [--tokenizer T]` reaches every run, the
verdicts and the report name the corpus (path, hash, size, baselines), and a bad path is a
one-line error before anything runs."""

import hashlib
import json
import math
import random

import pytest

from actlab.cli import main
from actlab.data import prepare
from actlab.studies import common

WORDS = ("the king and queen of the north sent word to their people that the river had risen "
         "over the fields of barley and wheat while the wind kept blowing from the sea").split()


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))).capitalize() + "."
             for _ in range(700)]
    path = tmp_path_factory.mktemp("corpus") / "river.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _verdict(folder):
    return json.loads((folder / "verdict.json").read_text())


def test_study_data_reaches_the_runs_and_the_verdict_names_the_corpus(text_file, tmp_path, capsys):
    out = tmp_path / "c3"
    assert main(["study", "convergence", "--preset", "smoke", "--data", str(text_file),
                 "--out", str(out), "--quiet"]) == 0
    text = text_file.read_text(encoding="utf-8")
    corpus = _verdict(out)["evidence"]["corpus"]
    assert corpus["path"] == str(text_file.resolve())
    assert corpus["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert corpus["chars"] == len(text) and corpus["tokenizer"] == "char"
    # the baselines are this text's, not the bundled corpus's
    mine = prepare(str(text_file), "char", 16).baselines()
    assert corpus["baselines"]["trigram"] == pytest.approx(mine["trigram"])
    assert _verdict(out)["evidence"]["baselines"]["trigram"] == pytest.approx(mine["trigram"])
    bundled = prepare(None, "char", 16).baselines()
    assert abs(mine["trigram"] - bundled["trigram"]) > 0.1
    # every stored run names the file and its hash: a changed file is another experiment
    from actlab.engine.store import Store

    with Store(out / "runs.sqlite") as store:
        params = [r["config"] for r in store.runs()]
    assert params and all(p["data"] == str(text_file.resolve()) for p in params)
    assert {p["data_hash"] for p in params} == {corpus["sha256"][:16]}


def test_study_tokenizer_reaches_the_gpt_runs(text_file, tmp_path):
    out = tmp_path / "c3-byte"
    assert main(["study", "convergence", "--preset", "smoke", "--data", str(text_file),
                 "--tokenizer", "byte", "--out", str(out), "--quiet"]) == 0
    corpus = _verdict(out)["evidence"]["corpus"]
    assert corpus["tokenizer"] == "byte" and corpus["vocab_size"] == 256
    byte = prepare(str(text_file), "byte", 16).baselines()
    assert corpus["baselines"]["trigram"] == pytest.approx(byte["trigram"])


def test_audit_data_runs_every_study_on_the_text_and_the_report_names_it(text_file, tmp_path):
    out = tmp_path / "audit"
    studies = "vanishing,centering,convergence,output-head,gates"
    code = main(["audit", "--preset", "smoke", "--data", str(text_file), "--studies", studies,
                 "--out", str(out), "--quiet"])
    assert code == 0
    text = text_file.read_text(encoding="utf-8")
    sha = hashlib.sha256(text.encode()).hexdigest()
    meta = json.loads((out / "audit.json").read_text())
    assert meta["corpus"]["sha256"] == sha and meta["corpus"]["chars"] == len(text)
    for name in studies.split(","):
        assert _verdict(out / name)["evidence"]["corpus"]["sha256"] == sha, name
    md = (out / "report.md").read_text()
    assert f"Corpus: river.txt ({text_file.resolve()}), {len(text):,} characters, sha256 {sha[:16]}" in md
    assert sha[:16] in (out / "report.html").read_text()
    assert json.loads((out / "verdicts.json").read_text())["corpus"]["sha256"] == sha


@pytest.mark.parametrize("argv", [
    ["study", "convergence", "--preset", "smoke"],
    ["audit", "--preset", "smoke", "--studies", "convergence"],
])
def test_a_missing_file_is_one_line_before_any_run(argv, tmp_path, capsys):
    out = tmp_path / "never"
    code = main([*argv, "--data", str(tmp_path / "missing.txt"), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "missing.txt" in err
    assert not (out / "runs.sqlite").exists() and not (out / "convergence" / "runs.sqlite").exists()


def test_the_bundled_corpus_keeps_its_run_identity():
    assert common.corpus_keys(None, "char") == {}
    assert common.corpus_keys(None, "bpe") == {"tokenizer": "bpe"}


def test_a_grid_grows_past_its_edge_until_the_best_is_interior():
    # the loss is lowest at a rate of 0.04: the grid 3e-3..3e-2 has its best on the upper edge,
    # grows one step (x3) to 0.09, where the best (0.03) is interior, and stops there
    def loss(lr):
        return (math.log10(lr) - math.log10(0.04)) ** 2

    calls = []

    def run_and_pick(grids):
        calls.append({g: list(v) for g, v in grids.items()})
        tuned = [{"params": {"g": g, "lr": lr}, "final_loss": loss(lr)} for g, v in grids.items() for lr in v]
        return common.pick_lrs(tuned, lambda p: p["g"], grids)

    chosen = common.grow_grids({"a": (3e-3, 1e-2, 3e-2)}, run_and_pick)
    assert [c["a"] for c in calls] == [[3e-3, 1e-2, 3e-2], [3e-3, 1e-2, 3e-2, 0.09]]
    assert chosen["a"]["lr"] == 0.03 and not chosen["a"]["at_edge"]

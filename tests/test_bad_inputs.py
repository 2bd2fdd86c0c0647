"""Every command, given bad input, answers with one line on stderr and the documented exit code
(2: the input is wrong; 1: the machine cannot do it), never a traceback, and leaves nothing
behind in the folder it ran in.

The CLI runs in this process (actlab.cli.main). Every case must fail while its input is being
checked, before any training: a tripwire stops the test as soon as a model is built, a sweep
executes a job or torch is asked for an absurd thread count, so a check that is missing shows
up as a failed case in milliseconds instead of a hung or exhausted machine.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from actlab.cli import main

TEXT = "To be, or not to be, that is the question. " * 40
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
NO_MPS = pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")

TINY = ["--steps", "1", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8",
        "--batch-size", "2", "--quiet"]


# -- the files the cases read ------------------------------------------------------------------

def _nested_json(depth: int) -> str:
    return '{"model": ' + "[" * depth + "]" * depth + "}"


VERDICT = {"claim": "F", "quote": "the article's words", "rule": "a rule", "verdict": "NOT SUPPORTED",
           "evidence": {}, "figures": [], "summary": "a summary", "caveats": [], "preset": "smoke",
           "seconds": 0.1}
AUDIT = {"preset": "smoke", "order": ["facts"], "env": {"python": "3"}, "seconds": 0.1,
         "studies": {"facts": {"seconds": 0.1, "error": None, "verdict": "NOT SUPPORTED"}}}


def audit_folder(root: Path, audit=None, verdict=None, audit_text=None, verdict_text=None) -> Path:
    """An audit folder as `actlab audit --studies facts` leaves it, with the given damage."""
    root.mkdir()
    (root / "audit.json").write_text(audit_text if audit_text is not None else
                                     json.dumps(AUDIT if audit is None else audit))
    (root / "facts").mkdir()
    (root / "facts" / "verdict.json").write_text(verdict_text if verdict_text is not None else
                                                 json.dumps(VERDICT if verdict is None else verdict))
    return root


def _claims(body: str):
    def make(path: Path, w: Path) -> None:
        path.write_text(body.replace("{w}", str(w)))
    return make


CLAIM = '[[claim]]\nid = "c1"\ntext = "t"\ncandidate = "relu"\nbaseline = "gelu"\n'


def _regime(value) -> dict:
    return {**VERDICT, "evidence": {"regime": value}}


def _audit_variant(**kw):
    return lambda path, w: audit_folder(path, **kw)


# name -> make(path, work folder). A case's argv names a material as {w}/NAME; only the
# materials it names are made.
MATERIALS = {
    "ok.txt": lambda p, w: p.write_text(TEXT),
    "empty.txt": lambda p, w: p.write_text(""),
    "bin.txt": lambda p, w: p.write_bytes(b"abc\x00\x01\x02" * 50),
    "latin.txt": lambda p, w: p.write_bytes(b"caf\xe9 \xff\xfe" * 50),
    "short.txt": lambda p, w: p.write_text("too short"),
    "no_txt": lambda p, w: (p.mkdir(), (p / "notes.md").write_text(TEXT)),
    "a_file": lambda p, w: p.write_text("a regular file\n"),
    "bad.json": lambda p, w: p.write_text("{steps: 3"),
    "list.json": lambda p, w: p.write_text("[1, 2]"),
    "unknown_key.json": lambda p, w: p.write_text('{"stepz": 3}'),
    "wrong_type.json": lambda p, w: p.write_text('{"steps": "many"}'),
    "model5.json": lambda p, w: p.write_text('{"model": 5}'),
    "lr_inf.json": lambda p, w: p.write_text('{"lr": Infinity}'),
    "lr_inf.toml": lambda p, w: p.write_text("lr = inf\n"),
    "nested.json": lambda p, w: p.write_text(_nested_json(100_000)),
    "nested.toml": lambda p, w: p.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n"),
    "config_dir": lambda p, w: p.mkdir(),
    "latin.json": lambda p, w: p.write_bytes(b'{"steps": \xff\xfe}'),
    "cuda.json": lambda p, w: p.write_text('{"device": "cuda"}'),
    "bad.toml": lambda p, w: p.write_text("[[claim]\nid = "),
    "no_claims.toml": lambda p, w: p.write_text("title = 'nothing here'\n"),
    "claim_no_text.toml": _claims('[[claim]]\nid = "c1"\ncandidate = "relu"\nbaseline = "gelu"\n'),
    "claim_unknown_act.toml": _claims(CLAIM.replace('"relu"', '"gleu"')),
    "claim_unknown_key.toml": _claims(CLAIM + "colour = 'red'\n"),
    "claim_config5.toml": _claims(CLAIM + "config = 5\n"),
    "claim_nul_id.toml": _claims(CLAIM.replace('"c1"', '"a\\u0000b"')),
    "claim_escape_id.toml": _claims(CLAIM.replace('"c1"', '"z/../../../escaped"')),
    "claim_margin_nan.toml": _claims(CLAIM + "margin = nan\n"),
    "claim_missing_data.toml": _claims(CLAIM + 'data = "{w}/nope.txt"\n'),
    "claim_seeds_zero.toml": _claims(CLAIM + "seeds = 0\n"),
    "claim_duplicate.toml": _claims(CLAIM + CLAIM),
    "corrupt_store": lambda p, w: (p.mkdir(), (p / "runs.sqlite").write_bytes(b"not sqlite " * 300)),
    "empty_folder": lambda p, w: p.mkdir(),
    "audit_ok": _audit_variant(),
    "audit_truncated": _audit_variant(audit_text=json.dumps(AUDIT)[:25]),
    "audit_empty_file": _audit_variant(audit_text=""),
    "audit_list": _audit_variant(audit=[AUDIT]),
    "audit_latin": lambda p, w: (audit_folder(p), (p / "audit.json").write_bytes(b"{\"preset\": \"\xff\"}")),
    "audit_nested": _audit_variant(audit_text=_nested_json(100_000)),
    "audit_order_str": _audit_variant(audit={**AUDIT, "order": "facts"}),
    "audit_order_int": _audit_variant(audit={**AUDIT, "order": [1, 2]}),
    "audit_order_escape": _audit_variant(audit={**AUDIT, "order": ["../../outside"]}),
    "audit_studies_list": _audit_variant(audit={**AUDIT, "studies": ["facts"]}),
    "audit_timing_str": _audit_variant(audit={**AUDIT, "studies": {"facts": {"seconds": "fast"}}}),
    "audit_seconds_str": _audit_variant(audit={**AUDIT, "seconds": "long"}),
    "audit_env_list": _audit_variant(audit={**AUDIT, "env": ["python"]}),
    "audit_corpus_chars": _audit_variant(audit={**AUDIT, "corpus": {"name": "x", "chars": "many"}}),
    "audit_json_dir": lambda p, w: (p.mkdir(), (p / "audit.json").mkdir()),
    "verdict_garbage": _audit_variant(verdict_text="\x00\x01garbage{{"),
    "verdict_truncated": _audit_variant(verdict_text=json.dumps(VERDICT)[:40]),
    "verdict_empty": _audit_variant(verdict_text=""),
    "verdict_list": _audit_variant(verdict=[VERDICT]),
    "verdict_no_claim": _audit_variant(verdict={k: v for k, v in VERDICT.items() if k != "claim"}),
    "verdict_claim_list": _audit_variant(verdict={**VERDICT, "claim": ["F"]}),
    "verdict_figures_str": _audit_variant(verdict={**VERDICT, "figures": "figures/a.png"}),
    "verdict_figure_escape": _audit_variant(verdict={**VERDICT, "figures": ["../../../etc/passwd"]}),
    "verdict_figure_absolute": _audit_variant(verdict={**VERDICT, "figures": ["/etc/passwd"]}),
    "verdict_caveats_int": _audit_variant(verdict={**VERDICT, "caveats": 3}),
    "verdict_evidence_list": _audit_variant(verdict={**VERDICT, "evidence": [1]}),
    "verdict_seconds_str": _audit_variant(verdict={**VERDICT, "seconds": "soon"}),
    "verdict_regime_str": _audit_variant(verdict=_regime({"in_regime": True, "reference_loss": "low"})),
    "verdict_regime_baselines": _audit_variant(
        verdict=_regime({"in_regime": True, "reference_loss": 2.0, "baselines": {"unigram": "x"}})),
    "store_garbage": lambda p, w: (audit_folder(p),
                                   (p / "facts" / "runs.sqlite").write_bytes(b"garbage " * 600)),
}


def case(name, argv, code=2, needle=None, marks=()):
    return pytest.param(argv, code, needle, id=name, marks=marks)


def train(*argv):
    return ["train", "--data", "{w}/ok.txt", *TINY, *argv]


def study(*argv, name="vanishing"):
    return ["study", name, "--preset", "smoke", "--out", "{w}/study", "--quiet", *argv]


def compare(*argv, acts="gelu,relu"):
    return ["compare", "--acts", acts, "--budget", "30s", "--seeds", "2", "--out", "{w}/cmp",
            "--quiet", *argv]


def audit(*argv):
    return ["audit", "--preset", "smoke", "--out", "{w}/aud", "--quiet", *argv]


def claims(material):
    return audit("--studies", "none", "--claims", f"{{w}}/{material}")


LONG_NAME = "n" * 300

CASES = [
    # the command line itself
    case("no command", []),
    case("unknown command", ["frobnicate"], needle="invalid choice"),
    case("debug flag alone", ["--debug"], needle="required"),
    # acts, zoo
    case("acts unknown flag", ["acts", "--bogus"], needle="unrecognized arguments"),
    case("acts stray argument", ["acts", "extra"], needle="unrecognized arguments"),
    case("acts json with a value", ["acts", "--json=yes"], needle="ignored explicit argument"),
    case("zoo unknown flag", ["zoo", "--sources"], needle="unrecognized arguments"),
    case("zoo stray argument", ["zoo", "gpt2"], needle="unrecognized arguments"),
    # train: the text
    case("train missing data", ["train", "--data", "{w}/nope.txt", *TINY], needle="no such file"),
    case("train folder without txt", ["train", "--data", "{w}/no_txt", *TINY]),
    case("train empty file", ["train", "--data", "{w}/empty.txt", *TINY]),
    case("train binary file", ["train", "--data", "{w}/bin.txt", *TINY]),
    case("train non-utf8 file", ["train", "--data", "{w}/latin.txt", *TINY]),
    case("train text shorter than a context", ["train", "--data", "{w}/short.txt", *TINY]),
    case("train device file as data", ["train", "--data", "/dev/null", *TINY],
         needle="neither a regular file nor a folder"),
    case("train context longer than the text", train("--block-size", "100000")),
    # train: activations
    case("train unknown activation", train("--act", "gleu"), needle="did you mean"),
    case("train empty activation", train("--act", "")),
    case("train hostile formula", train("--act", "__import__('os').system('true')")),
    case("train formula syntax error", train("--act", "x *")),
    case("train formula unknown function", train("--act", "x * frob(x)")),
    case("train formula nested too deep", train("--act", "(" * 5000 + "x" + ")" * 5000)),
    case("train missing module", train("--act", "no_such_module_xyz:fn")),
    case("train os:system as activation", train("--act", "os:system")),
    case("train builtins:eval as activation", train("--act", "builtins:eval")),
    # train: numbers
    case("train negative layers", train("--n-layer", "-2"), needle="must be >= 1"),
    case("train zero steps", train("--steps", "0"), needle="must be >= 1"),
    case("train fractional steps", train("--steps", "2.5"), needle="expected a whole number"),
    case("train lr not a number", train("--lr", "fast"), needle="expected a number"),
    case("train lr inf", train("--lr", "inf"), needle="finite"),
    case("train lr nan", train("--lr", "nan"), needle="finite"),
    case("train lr negative", train("--lr", "-1"), needle="must be > 0"),
    case("train lr zero", train("--lr", "0"), needle="must be > 0"),
    case("train grad clip nan", train("--grad-clip", "nan"), needle="finite"),
    case("train grad clip negative", train("--grad-clip", "-1"), needle="must be >= 0"),
    case("train negative seed", train("--seed", "-1"), needle="must be >= 0"),
    case("train seed beyond 64 bits", train("--seed", str(2**64))),
    case("train negative threads", train("--threads", "-1"), needle="must be >= 0"),
    case("train 100000 threads", train("--threads", "100000")),
    case("train width 1e12 (memory estimate)", train("--n-embd", "1000000000000")),
    case("train depth 1e12", train("--n-layer", "1000000000000")),
    case("train width not divisible by heads", train("--n-embd", "30", "--n-head", "4"),
         needle="divisible"),
    case("train zero batch", train("--batch-size", "0"), needle="must be >= 1"),
    case("train zero bpe vocabulary", train("--bpe-vocab", "0"), needle="must be >= 1"),
    case("train zero eval interval", train("--eval-every", "0"), needle="must be >= 1"),
    case("train negative warmup", train("--warmup", "-1"), needle="must be >= 0"),
    # train: choices and devices
    case("train unknown tokenizer", train("--tokenizer", "klingon"), needle="unknown tokenizer"),
    case("train unknown optimizer", train("--optimizer", "lion"), needle="invalid choice"),
    case("train unknown compile choice", train("--compile", "sometimes"), needle="invalid choice"),
    case("train unknown kernels", train("--kernels", "magic"), needle="invalid choice"),
    case("train unknown device", train("--device", "tpu"), needle="invalid choice"),
    case("train cuda without CUDA", train("--device", "cuda"), code=1,
         needle="--device cuda: this torch build", marks=NO_CUDA),
    case("train mps without MPS", train("--device", "mps"), code=1,
         needle="--device mps: this torch build", marks=NO_MPS),
    case("train cuda from the config file", train("--config", "{w}/cuda.json"), code=1,
         needle="--device cuda", marks=NO_CUDA),
    # train: config files
    case("train malformed config", train("--config", "{w}/bad.json"), needle="malformed config"),
    case("train missing config", train("--config", "{w}/none.toml"), needle="not found"),
    case("train config is a folder", train("--config", "{w}/config_dir")),
    case("train config top level a list", train("--config", "{w}/list.json"), needle="top level"),
    case("train config unknown key", train("--config", "{w}/unknown_key.json"), needle="stepz"),
    case("train config wrong type", train("--config", "{w}/wrong_type.json"), needle="'steps'"),
    case("train config model not a table", train("--config", "{w}/model5.json"), needle="tables"),
    case("train config not utf-8", train("--config", "{w}/latin.json")),
    case("train config nested 100000 deep (JSON)", train("--config", "{w}/nested.json")),
    case("train config nested 100000 deep (TOML)", train("--config", "{w}/nested.toml")),
    case("train config lr Infinity (JSON)", train("--config", "{w}/lr_inf.json")),
    case("train config lr inf (TOML)", train("--config", "{w}/lr_inf.toml")),
    # train: the run folder
    case("train out is a file", train("--out", "{w}/a_file"), needle="exists and is not a folder"),
    case("train out under a file", train("--out", "{w}/a_file/run"), needle="is a file"),
    case("train out under /proc", train("--out", "/proc/actlab-run"), needle="/proc holds"),
    case("train out under /sys", train("--out", "/sys/actlab-run"), needle="/sys holds"),
    case("train out is /dev/null", train("--out", "/dev/null"), needle="exists and is not a folder"),
    case("train out empty", train("--out", ""), needle="--out is empty"),
    case("train out with a NUL byte", train("--out", "{w}/ru\0n"), needle="NUL byte"),
    case("train out name too long", train("--out", f"{{w}}/{LONG_NAME}"), needle="too long"),
    # study
    case("study unknown name", study(name="nope"), needle="unknown study"),
    case("study missing name", ["study"], needle="required"),
    case("study unknown preset", ["study", "vanishing", "--preset", "huge"], needle="invalid choice"),
    case("study missing data", study("--data", "{w}/nope.txt"), needle="no such file"),
    case("study empty data", study("--data", "{w}/empty.txt", name="convergence")),
    case("study binary data", study("--data", "{w}/bin.txt", name="centering")),
    case("study unknown tokenizer", study("--tokenizer", "klingon"), needle="invalid choice"),
    case("study out is a file", study("--out", "{w}/a_file"), needle="exists and is not a folder"),
    case("study out under /proc", study("--out", "/proc/actlab-study"), needle="/proc holds"),
    case("study out with a NUL byte", study("--out", "{w}/a\0b"), needle="NUL byte"),
    case("study corrupt runs.sqlite", study("--out", "{w}/corrupt_store"), needle="runs.sqlite"),
    case("study ray not installed", study("--executor", "ray"), code=1, needle="needs Ray"),
    case("study unknown executor", study("--executor", "dask"), needle="invalid choice"),
    case("study address without ray", study("--address", "10.0.0.1:6379"), needle="--executor ray"),
    # compare
    case("compare one activation", compare(acts="gelu"), needle="at least two"),
    case("compare no activations", compare(acts=","), needle="at least two"),
    case("compare unknown activation", compare(acts="gelu,gleu"), needle="did you mean"),
    case("compare builtins:eval", compare(acts="gelu,builtins:eval")),
    case("compare missing acts", ["compare", "--out", "{w}/cmp"], needle="required"),
    case("compare zero budget", compare("--budget", "0"), needle="more than 0"),
    case("compare budget in words", compare("--budget", "soon"), needle="budget must look like"),
    case("compare negative budget", compare("--budget=-5m"), needle="budget must look like"),
    case("compare budget inf", compare("--budget", "inf"), needle="budget must look like"),
    case("compare zero seeds", compare("--seeds", "0"), needle="must be >= 1"),
    case("compare seeds up to the tuning seed", compare("--seeds", "100000"), needle="seeds must be"),
    case("compare lr inf", compare("--lr", "inf"), needle="finite"),
    case("compare lr negative", compare("--lr", "-3"), needle="must be > 0"),
    case("compare zero workers", compare("--workers", "0"), needle="must be >= 1"),
    case("compare unknown device", compare("--device", "tpu"), needle="invalid choice"),
    case("compare cuda without CUDA", compare("--device", "cuda"), code=1,
         needle="--device cuda: this torch build", marks=NO_CUDA),
    case("compare mps without MPS", compare("--device", "mps"), code=1,
         needle="--device mps", marks=NO_MPS),
    case("compare ray not installed", compare("--executor", "ray"), code=1, needle="needs Ray"),
    case("compare missing data", compare("--data", "{w}/nope.txt"), needle="no such file"),
    case("compare empty data", compare("--data", "{w}/empty.txt")),
    case("compare unknown tokenizer", compare("--tokenizer", "klingon"), needle="invalid choice"),
    case("compare out is a file", compare("--out", "{w}/a_file"), needle="exists and is not a folder"),
    case("compare out under /sys", compare("--out", "/sys/actlab-cmp"), needle="/sys holds"),
    # audit
    case("audit unknown study", audit("--studies", "nope"), needle="unknown study"),
    case("audit empty study list", audit("--studies", ""), needle="--studies is empty"),
    case("audit a blank study name", audit("--studies", "vanishing,"), needle="unknown study"),
    case("audit nothing to run", audit("--studies", "none"), needle="runs nothing"),
    case("audit unknown preset", ["audit", "--preset", "enormous"], needle="invalid choice"),
    case("audit missing data", audit("--data", "{w}/nope.txt"), needle="no such file"),
    case("audit binary data", audit("--data", "{w}/bin.txt")),
    case("audit unknown tokenizer", audit("--tokenizer", "klingon"), needle="invalid choice"),
    case("audit out is a file", audit("--out", "{w}/a_file"), needle="exists and is not a folder"),
    case("audit out under /proc", audit("--out", "/proc/actlab-audit"), needle="/proc holds"),
    case("audit out name too long", audit("--out", f"{{w}}/{LONG_NAME}/x"), needle="too long"),
    case("audit ray not installed", audit("--executor", "ray"), code=1, needle="needs Ray"),
    case("audit unknown executor", audit("--executor", "dask"), needle="invalid choice"),
    case("audit address without ray", audit("--address", "10.0.0.1:6379"), needle="--executor ray"),
    case("audit missing claims file", claims("nope.toml"), needle="not found"),
    case("audit malformed claims file", claims("bad.toml"), needle="malformed config"),
    case("audit claims file without claims", claims("no_claims.toml"), needle="[[claim]]"),
    case("audit claim without text", claims("claim_no_text.toml"), needle="text"),
    case("audit claim unknown activation", claims("claim_unknown_act.toml"), needle="gleu"),
    case("audit claim unknown key", claims("claim_unknown_key.toml"), needle="colour"),
    case("audit claim duplicate id", claims("claim_duplicate.toml")),
    case("audit claim config = 5", claims("claim_config5.toml")),
    case("audit claim id with a NUL byte", claims("claim_nul_id.toml")),
    case("audit claim id escaping the folder", claims("claim_escape_id.toml")),
    case("audit claim margin nan", claims("claim_margin_nan.toml")),
    case("audit claim missing data path", claims("claim_missing_data.toml")),
    case("audit claim zero seeds", claims("claim_seeds_zero.toml")),
    # report
    case("report missing folder", ["report", "{w}/nope"], needle="holds no audit"),
    case("report on a file", ["report", "{w}/a_file"], needle="holds no audit"),
    case("report empty folder", ["report", "{w}/empty_folder"], needle="holds no audit"),
    case("report audit.json is a folder", ["report", "{w}/audit_json_dir"], needle="holds no audit"),
    case("report truncated audit.json", ["report", "{w}/audit_truncated"], needle="not valid JSON"),
    case("report empty audit.json", ["report", "{w}/audit_empty_file"], needle="not valid JSON"),
    case("report audit.json an array", ["report", "{w}/audit_list"], needle="holds an array"),
    case("report audit.json not utf-8", ["report", "{w}/audit_latin"], needle="not UTF-8"),
    case("report audit.json nested deep", ["report", "{w}/audit_nested"], needle="nested too deeply"),
    case("report order a string", ["report", "{w}/audit_order_str"], needle="'order'"),
    case("report order of numbers", ["report", "{w}/audit_order_int"], needle="'order'"),
    case("report order escaping the folder", ["report", "{w}/audit_order_escape"],
         needle="not a plain folder name"),
    case("report studies an array", ["report", "{w}/audit_studies_list"], needle="'studies'"),
    case("report study seconds a string", ["report", "{w}/audit_timing_str"], needle="'seconds'"),
    case("report audit seconds a string", ["report", "{w}/audit_seconds_str"], needle="'seconds'"),
    case("report env an array", ["report", "{w}/audit_env_list"], needle="'env'"),
    case("report corpus chars a string", ["report", "{w}/audit_corpus_chars"], needle="'chars'"),
    case("report garbage verdict.json", ["report", "{w}/verdict_garbage"], needle="verdict.json is damaged"),
    case("report truncated verdict.json", ["report", "{w}/verdict_truncated"], needle="not valid JSON"),
    case("report empty verdict.json", ["report", "{w}/verdict_empty"], needle="not valid JSON"),
    case("report verdict.json an array", ["report", "{w}/verdict_list"], needle="holds an array"),
    case("report verdict without claim", ["report", "{w}/verdict_no_claim"], needle="'claim'"),
    case("report verdict claim a list", ["report", "{w}/verdict_claim_list"], needle="'claim'"),
    case("report figures a string", ["report", "{w}/verdict_figures_str"], needle="'figures'"),
    case("report figure escaping the folder", ["report", "{w}/verdict_figure_escape"],
         needle="not a path inside"),
    case("report figure absolute", ["report", "{w}/verdict_figure_absolute"], needle="not a path inside"),
    case("report caveats a number", ["report", "{w}/verdict_caveats_int"], needle="'caveats'"),
    case("report evidence an array", ["report", "{w}/verdict_evidence_list"], needle="'evidence'"),
    case("report verdict seconds a string", ["report", "{w}/verdict_seconds_str"], needle="'seconds'"),
    case("report regime loss a string", ["report", "{w}/verdict_regime_str"], needle="'reference_loss'"),
    case("report regime baselines damaged", ["report", "{w}/verdict_regime_baselines"],
         needle="'unigram'"),
    case("report garbage runs.sqlite", ["report", "{w}/store_garbage"], needle="runs.sqlite"),
]


# -- the harness -------------------------------------------------------------------------------

class Tripwire(Exception):
    """A bad-input case got past every check and started to train."""


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The folder the command runs in (its cwd, so a default results/ folder lands here too),
    with the n-gram cache outside it; torch, the sweeps and Ray fenced off."""
    w = tmp_path / "w"
    w.mkdir()
    monkeypatch.chdir(w)
    monkeypatch.setenv("ACTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ACTLAB_DEBUG", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, installed or not

    from actlab.engine import sweep
    from actlab.nn import gpt

    def stop(*_a, **_k):
        raise Tripwire("a bad-input case reached training")

    real_threads = torch.set_num_threads

    def threads(n):
        if n > 64:
            stop()
        real_threads(n)

    monkeypatch.setattr(gpt.GPT, "__init__", stop)
    monkeypatch.setattr(sweep, "execute", stop)
    monkeypatch.setattr(torch, "set_num_threads", threads)
    return w


def make_materials(argv: list[str], w: Path) -> list[str]:
    """Make the materials argv names; return argv with {w} replaced by the work folder."""
    for name, make in MATERIALS.items():
        if any(f"{{w}}/{name}" in a for a in argv):
            make(w / name, w)
    return [a.replace("{w}", str(w)) for a in argv]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
                                       else "folder")
            for p in sorted(root.rglob("*"))}


def run_cli(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors exit from inside parse_args
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_is_large_and_covers_every_command():
    names = [p.values[0][0] if p.values[0] else "" for p in CASES]
    assert len(CASES) >= 80
    for command in ("acts", "zoo", "train", "study", "compare", "audit", "report"):
        assert names.count(command) >= 2, command


@pytest.mark.parametrize("argv,code,needle", CASES)
def test_bad_input_one_line_no_traceback_nothing_left(argv, code, needle, work, capsys):
    argv = make_materials(argv, work)
    before = snapshot(work)
    got, out, err = run_cli(capsys, argv)
    lines = err.strip().splitlines()
    assert "Traceback" not in out + err
    assert len(lines) == 1, err
    assert got == code, err
    assert lines[0].startswith("actlab"), err
    if needle:
        assert needle in lines[0], err
    assert out == ""
    assert snapshot(work) == before  # nothing created, changed or removed


def test_the_undamaged_audit_folder_renders(work, capsys):
    """The control for the damaged folders above: the same folder, undamaged, is a report."""
    argv = make_materials(["report", "{w}/audit_ok"], work)
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    assert (work / "audit_ok" / "report.html").is_file()
    assert "NOT SUPPORTED" in out and err == ""


def test_the_tripwire_stops_a_case_that_trains(work, capsys):
    """Valid input reaches training, where the harness stops it: a case that fails this way
    has slipped through its check."""
    argv = make_materials(train(), work)
    code, _, err = run_cli(capsys, argv)
    assert code == 1
    assert "internal error (a bug in actlab" in err and "Tripwire" in err

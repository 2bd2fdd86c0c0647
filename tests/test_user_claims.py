"""A user's own claims: the file format, the fixed rule, and one real paired experiment."""

import json

import pytest

from actlab.lab.audit import run_audit
from actlab.errors import ActlabError
from actlab.studies.base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, VERDICTS
from actlab.lab.user_claims import decide, load_claims

TEXT = "Whether 'tis nobler in the mind to suffer the slings and arrows of outrageous fortune. " * 50


def _write(tmp_path, body):
    path = tmp_path / "claims.toml"
    path.write_text(body)
    return path


def test_rule_gives_each_verdict_on_hand_built_intervals():
    assert decide({"lo": -0.3, "hi": -0.1, "margin": 0.0}, 0) == SUPPORTED
    assert decide({"lo": -0.3, "hi": -0.1, "margin": 0.2}, 0) == INCONCLUSIVE  # not by the margin
    assert decide({"lo": 0.05, "hi": 0.2, "margin": 0.0}, 0) == NOT_SUPPORTED
    assert decide({"lo": -0.1, "hi": 0.1, "margin": 0.0}, 0) == INCONCLUSIVE
    assert decide({"lo": -0.3, "hi": -0.1, "margin": 0.0}, 1) == NOT_SUPPORTED  # diverged
    assert decide({"lo": float("nan"), "hi": float("nan"), "margin": 0.0}, 0) == INCONCLUSIVE


@pytest.mark.parametrize("body,message", [
    ("x = 1", "[[claim]]"),
    ('[[claim]]\nid = "a"\ntext = "t"\ncandidate = "relu"\n', "baseline"),
    ('[[claim]]\nid = "a"\ntext = "t"\ncandidate = "gleu"\nbaseline = "gelu"\n', "did you mean"),
    ('[[claim]]\nid = "a"\ntext = "t"\ncandidate = "relu"\nbaseline = "gelu"\nseeds = 1\n', "seeds"),
    ('[[claim]]\nid = "a"\ntext = "t"\ncandidate = "relu"\nbaseline = "gelu"\nwhat = 1\n', "unknown key"),
    ('[[claim]]\nid = "a"\ntext = "t"\ncandidate = "relu"\nbaseline = "gelu"\n[claim.config]\nn_embd = -4\n',
     "n_embd"),
])
def test_bad_claims_files_fail_in_one_line(tmp_path, body, message):
    with pytest.raises(ActlabError) as err:
        load_claims(_write(tmp_path, body))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_a_user_claim_runs_in_the_audit(tmp_path):
    data = tmp_path / "mine.txt"
    data.write_text(TEXT)
    claims = _write(tmp_path, f'''
[[claim]]
id = "relu-vs-gelu"
text = "relu reaches a lower validation loss than gelu on <my> data"
candidate = "relu"
baseline = "x * sigmoid(1.702 * x)"
data = "{data}"
seeds = 2
steps = 15
[claim.config]
n_layer = 1
n_embd = 16
n_head = 2
block_size = 16
batch_size = 4
eval_every = 15
''')
    out = tmp_path / "audit"
    meta = run_audit("smoke", out, studies=(), claims_file=claims, progress=False)
    assert meta["order"] == ["user-relu-vs-gelu"]
    verdict = json.loads((out / "user-relu-vs-gelu" / "verdict.json").read_text())
    assert verdict["verdict"] in VERDICTS
    assert verdict["evidence"]["paired"]["n"] == 2
    assert "&lt;my&gt;" in (out / "report.html").read_text()

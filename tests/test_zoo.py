"""The model zoo: the shipped table parses and validates, known rows hold the values their
public configs state, and the article's model facts get the verdicts the rule gives."""

import importlib

import pytest

from actlab.article import claims
from actlab.article import zoo
from actlab.errors import ActlabError
from actlab.studies.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED

ROW = """
[[model]]
name = "A"
org = "x"
year = 2020
ffn = "relu"
family = "relu"
gated = false
attention_gate = "none"
router = "none"
basis = "stated"
sources = ["paper A, §2"]
"""


@pytest.fixture(scope="module")
def rows():
    return zoo.load()


def test_shipped_table_parses_and_every_row_has_a_source(rows):
    assert len(rows) >= 20
    assert len({r["name"] for r in rows}) == len(rows)
    for r in rows:
        assert r["sources"] and all(len(s.strip()) > 10 for s in r["sources"]), r["name"]


def test_known_rows_hold_their_public_config_values(rows):
    t = zoo.by_name(rows)
    assert t["GPT-2"]["ffn"] == "gelu_tanh" and '"gelu_new"' in " ".join(t["GPT-2"]["sources"])
    for name in ("LLaMA", "Llama 2", "Llama 3", "Mistral 7B", "Qwen2", "Qwen3"):
        assert (t[name]["ffn"], t[name]["family"], t[name]["gated"]) == ("swiglu", "silu", True), name
    assert '"hidden_act": "silu"' in " ".join(t["Llama 2"]["sources"])
    assert t["OPT"]["ffn"] == "relu" and '"activation_function": "relu"' in " ".join(t["OPT"]["sources"])
    assert t["GPT-1"]["ffn"] == "gelu" and t["Transformer"]["ffn"] == "relu"
    assert t["DeepSeek-V3"]["router"] == "sigmoid" and t["Qwen3-Next"]["attention_gate"] == "sigmoid"
    assert t["T5 (v1.0)"]["ffn"] == "relu" and t["T5 v1.1"]["ffn"] == "geglu_tanh"
    assert t["Nemotron-4 15B"]["ffn"] == "relu2" and t["Gemma"]["ffn"] == "geglu_tanh"
    assert t["GPT-4"]["n_layer"] == "unknown" and t["GPT-4"]["basis"] == "unknown"


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('sources = ["paper A, §2"]', "sources = []"), "sources"),
    (lambda s: s.replace('sources = ["paper A, §2"]', 'sources = ["  "]'), "sources"),
    (lambda s: s.replace('sources = ["paper A, §2"]\n', ""), "missing sources"),
    (lambda s: s.replace('ffn = "relu"', 'ffn = "swish"'), "ffn"),
    (lambda s: s + s, "duplicate"),
    (lambda s: s.replace('basis = "stated"', 'basis = "inherited"'), "inherits"),
    (lambda s: s + s.replace('"A"', '"B"').replace('basis = "stated"', 'basis = "inherited"\ninherits = "A"')
     .replace('ffn = "relu"', 'ffn = "gelu"'), "differs"),
    (lambda s: s.replace("year = 2020", "year = 2020\nn_layer = -3"), "n_layer"),
])
def test_validation_rejects_rows_a_verdict_could_trip_on(edit, message):
    assert zoo.load(ROW)[0]["name"] == "A"  # the base row is valid
    with pytest.raises(ActlabError, match=message):
        zoo.load(edit(ROW))


def test_fact_verdicts_on_the_shipped_table(rows):
    facts = {f["id"]: f for f in zoo.fact_verdicts(rows)}
    gpt = facts["original-gpt-relu"]
    assert gpt["verdict"] == NOT_SUPPORTED
    assert gpt["models"][0]["value"] == "gelu" and "GELU" in gpt["models"][0]["sources"][0]
    assert gpt["related"][0]["name"] == "Transformer" and gpt["related"][0]["ffn"] == "relu"
    assert facts["gpt2-3-gelu"]["verdict"] == SUPPORTED
    silu = facts["instructgpt-silu"]
    assert silu["verdict"] == NOT_SUPPORTED and silu["models"][0]["basis"] == "inherited"
    assert "LLaMA" in silu["holds_for"]  # SiLU does appear in other LLMs
    deep = facts["gpt4-100-layers"]
    assert deep["verdict"] == INCONCLUSIVE and "no public source" in deep["reason"]
    assert set(deep["holds_for"]) >= {"PaLM", "Llama 3"}


def test_fact_rule_on_hand_built_rows():
    base = zoo.load(ROW)[0]
    fact = zoo.Fact("deep", "X has 100+ layers", "q", ("A",), "n_layer", ">=100")
    assert zoo.check(fact, [{**base, "n_layer": 120}])["verdict"] == SUPPORTED
    assert zoo.check(fact, [{**base, "n_layer": 99}])["verdict"] == NOT_SUPPORTED
    assert zoo.check(fact, [{**base, "n_layer": "unknown"}])["verdict"] == INCONCLUSIVE
    assert zoo.check(fact, [])["verdict"] == INCONCLUSIVE  # a model not in the table
    two = zoo.Fact("two", "A and B use ReLU", "q", ("A", "B"), "family", "relu")
    b = {**base, "name": "B"}
    assert zoo.check(two, [base, b])["verdict"] == SUPPORTED
    assert zoo.check(two, [base, {**b, "family": "gelu"}])["verdict"] == NOT_SUPPORTED
    assert zoo.check(two, [base, {**b, "family": "unknown"}])["verdict"] == INCONCLUSIVE


def test_zoo_table_lists_every_model(rows):
    from rich.console import Console

    console = Console(record=True, width=150)
    console.print(zoo.zoo_table(rows, width=150))
    text = console.export_text()
    for r in rows:
        assert r["name"] in text


@pytest.fixture
def facts_study(monkeypatch):
    """The facts study with claim F present (registering needs the claim)."""
    monkeypatch.setitem(claims.CLAIMS, "F", claims.Claim(
        "F", "Model facts", "Early transformers (e.g., original GPT) used ReLU for speed and simplicity.",
        "facts"))
    return importlib.import_module("actlab.studies.facts")


@pytest.mark.parametrize("verdicts, expected", [
    ([SUPPORTED, SUPPORTED], SUPPORTED),
    ([SUPPORTED, INCONCLUSIVE], CAVEAT),
    ([SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE], NOT_SUPPORTED),
    ([INCONCLUSIVE, INCONCLUSIVE], INCONCLUSIVE),
])
def test_overall_facts_rule(facts_study, verdicts, expected):
    assert facts_study.decide(verdicts) == expected


def test_facts_study_verdict_lists_each_fact_with_its_source(facts_study, tmp_path):
    v = facts_study.run("quick", tmp_path, progress=False)
    assert v.claim == "F" and v.verdict == NOT_SUPPORTED
    got = {f["id"]: f["verdict"] for f in v.evidence["facts"]}
    assert got == {"original-gpt-relu": NOT_SUPPORTED, "gpt2-3-gelu": SUPPORTED,
                   "instructgpt-silu": NOT_SUPPORTED, "gpt4-100-layers": INCONCLUSIVE}
    assert all(m["sources"] for f in v.evidence["facts"] for m in f["models"])

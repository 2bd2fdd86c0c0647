"""Study C1 (vanishing): the smoke preset end to end, stored-run reuse, and the decision rule on
hand-built evidence."""

import json
import math

import matplotlib.image
import pytest

from actlab.engine import sweep
from actlab.article.claims import CLAIMS
from actlab.analysis.numbers import json_safe
from actlab.analysis.stats import paired_test
from actlab.studies import base
from actlab.studies.vanishing import study as V

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("vanishing")
    return V.run("smoke", out, progress=False), out


@pytest.mark.slow
def test_smoke_verdict_is_complete(smoke):
    verdict, out = smoke
    assert verdict.claim == "C1" and verdict.study == "vanishing" and verdict.preset == "smoke"
    assert verdict.quote == CLAIMS["C1"].quote and verdict.rule == V.RULE
    assert verdict.verdict in base.VERDICTS and verdict.summary and verdict.caveats
    for model in ("mlp", "gpt"):
        ev = verdict.evidence[model]
        assert ev["depth"] == 6 and ev["gap"]["n"] == 2  # two seeds, both complete
        assert ev["status"] == V.status(ev["gap"])
    assert verdict.verdict == V.decide({m: verdict.evidence[m]["gap"] for m in ("mlp", "gpt")})
    # Plain MLP at init: Xavier gives sigmoid a backward gain of about sigma'(0) = 1/4 per layer,
    # Kaiming gives ReLU about 1, so over 5 layer-to-layer steps sigmoid loses about
    # 5 log10(4) = 3 decades more (the input scales of the first and last layer shift it a bit).
    assert 2.0 < verdict.evidence["mlp"]["gap_init"]["diff"] < 4.0
    json.dumps(json_safe(verdict.to_dict()), allow_nan=False)  # verdict.json can be written


@pytest.mark.slow
def test_smoke_figures_are_real_pngs(smoke):
    verdict, out = smoke
    assert len(verdict.figures) == 8
    for rel in verdict.figures:
        path = out / rel
        assert not rel.startswith("/") and path.read_bytes()[:8] == PNG
        assert matplotlib.image.imread(path).std() > 0.01  # not a blank canvas


@pytest.mark.slow
def test_rerun_computes_nothing(smoke, monkeypatch):
    verdict, out = smoke
    calls = []
    real = sweep.run_grid

    def counted_grid(study, jobs, fn, out_dir, **kw):
        def counted(params):
            calls.append(params)
            return fn(params)
        return real(study, jobs, counted, out_dir, executor="serial", **kw)

    monkeypatch.setattr(V, "run_grid", counted_grid)
    again = V.run("smoke", out, progress=False)
    assert calls == []
    assert json.dumps(json_safe(again.evidence)) == json.dumps(json_safe(verdict.evidence))


def test_jobs_cover_the_grid():
    jobs = V.jobs_for(V.PRESETS["quick"])
    mlp = [j for j in jobs if j["model"] == "mlp"]
    gpt = [j for j in jobs if j["model"] == "gpt"]
    assert len(mlp) == 6 * 3 * 3 and len(gpt) == 6 * 4 * 3  # acts x depths x seeds
    assert {j["init"] for j in mlp if j["act"] in ("sigmoid", "tanh")} == {"xavier"}
    assert {j["init"] for j in mlp if j["act"] in ("relu", "silu")} == {"kaiming"}
    full = V.jobs_for(V.PRESETS["full"])
    assert {(j["act"], j["init"]) for j in full if j["model"] == "mlp" and j["act"] == "gelu"} == {
        ("gelu", "kaiming"), ("gelu", "xavier")}
    assert max(j["depth"] for j in full if j["model"] == "gpt") >= 32


def test_gpt_ladder_reaches_128_blocks_at_one_width():
    # The article's depth example is GPT-4's "100+ layers": every preset but smoke reaches 128.
    depths = {name: p["gpt"]["depths"] for name, p in V.PRESETS.items()}
    assert depths["quick"] == (4, 16, 32, 128)
    assert max(depths["standard"]) == max(depths["full"]) == 128
    assert set(depths["quick"]) <= set(depths["standard"]) <= set(depths["full"])
    jobs = [j for j in V.jobs_for(V.PRESETS["quick"]) if j["model"] == "gpt"]
    assert {j["depth"] for j in jobs if j["act"] == "sigmoid" and j["seed"] == 2} == {4, 16, 32, 128}
    assert {(j["n_embd"], j["steps"]) for j in jobs} == {(16, 30)}  # one width and K per ladder
    assert V.PRESETS["quick"]["mlp"]["steps"] == 60


def test_largest_depth_is_the_top_of_each_models_ladder():
    runs = [{"params": {"model": "gpt", "act": a, "depth": d, "seed": s, "steps": 4},
             "outcome": "completed", "grad_steps": [0, 4],
             "w_grad": [[10.0 ** (r * d / 128), 1.0]] * 2}
            for a, r in (("sigmoid", -2.0), ("relu", 0.0), ("gelu", 0.2), ("silu", -0.2))
            for d in (4, 32, 128) for s in (0, 1, 2)]
    ev = V.model_evidence(runs)
    assert ev["depth"] == 128 and ev["depths"] == [4, 32, 128]
    assert ev["log_ratio"]["sigmoid"]["mean"] == pytest.approx(-2.0)
    assert ev["gap"]["diff"] == pytest.approx(2.0) and ev["status"] == "holds"
    assert ev["log_ratio_by_depth"]["32"]["sigmoid"]["mean"] == pytest.approx(-0.5)


def _run(act, seed, ratios, outcome="completed", steps=4):
    """A stored-looking run whose first/last weight-gradient norms give the log10 `ratios`."""
    return {"params": {"model": "mlp", "act": act, "depth": 6, "seed": seed, "steps": steps},
            "outcome": outcome, "grad_steps": [0, steps][: len(ratios)],
            "w_grad": [[10.0 ** r, 0.5, 1.0] for r in ratios]}


def test_log_ratio_measure():
    run = _run("sigmoid", 0, [-3.0, -5.0])
    assert V.run_measure(run, "init") == pytest.approx(-3.0)
    assert V.run_measure(run, "final") == pytest.approx(-5.0)
    assert V.run_measure(run) == pytest.approx(-4.0)
    # Underflow to 0 counts as the floor; a diverged or cut-short run is left out.
    assert V.log_ratios({"w_grad": [[0.0, 2.0]]}) == [pytest.approx(math.log10(V.NORM_FLOOR / 2))]
    assert math.isnan(V.run_measure(_run("relu", 0, [0.0, 0.0], outcome="diverged")))
    assert math.isnan(V.run_measure(_run("relu", 0, [0.0])))


def test_family_gap_is_paired_by_seed():
    sig = {0: -3.0, 1: -3.5, 2: -2.0}
    by_act = {"sigmoid": sig, "relu": {0: 0.0, 1: 0.1, 2: 0.2}, "gelu": {0: 0.2, 1: 0.1, 2: 0.0},
              "silu": {0: 0.1, 1: 0.1, 2: math.nan}}
    gap = V.family_gap(by_act)
    # seed 2 has a missing family member: only seeds 0 and 1 pair up.
    assert gap == paired_test([0.1, 0.1], [-3.0, -3.5])
    assert gap["diff"] == pytest.approx(3.35)


def test_decide_returns_each_verdict():
    holds = {"diff": 3.0, "lo": 2.0, "hi": 4.0, "n": 3}
    fails = {"diff": 0.1, "lo": -0.3, "hi": 0.5, "n": 3}
    unclear = {"diff": 1.2, "lo": 0.4, "hi": 2.0, "n": 3}
    one_seed = {"diff": 3.0, "lo": math.nan, "hi": math.nan, "n": 1}
    edge = {"diff": 2.0, "lo": 1.0, "hi": 3.0, "n": 3}  # lower end exactly one decade: not above
    assert V.decide({"mlp": holds, "gpt": holds}) == base.SUPPORTED
    assert V.decide({"mlp": holds, "gpt": fails}) == base.CAVEAT
    assert V.decide({"mlp": fails, "gpt": holds}) == base.CAVEAT
    assert V.decide({"mlp": fails, "gpt": fails}) == base.NOT_SUPPORTED
    assert V.decide({"mlp": holds, "gpt": unclear}) == base.INCONCLUSIVE
    assert V.decide({"mlp": one_seed, "gpt": holds}) == base.INCONCLUSIVE
    assert V.decide({"mlp": edge, "gpt": holds}) == base.INCONCLUSIVE
    assert V.decide({"mlp": holds}) == base.INCONCLUSIVE  # a model with no runs

"""The mixture-of-experts FFN (nn/moe.py): both routers against hand-computed gates, the layer
against the explicit sum of its chosen experts, float64 gradients, the parameter count, the
config fields, and bitwise-reproducible training."""

import json
import math

import pytest
import torch

from actlab.config import ModelConfig, TrainConfig, merge
from actlab.errors import ActlabError
from actlab.nn.gpt import GPT
from actlab.nn.moe import MoEFFN, dense_gates, expert_load, moe_param_count, route
from actlab.training.loop import train
from conftest import tiny_model, tiny_train

# Two tokens in d = 2 whose router logits are the rows of LOGITS: W_r = LOGITS^T.
LOGITS = torch.tensor([[1.0, -0.5, 2.0, 0.0], [-3.0, -1.0, -2.0, -4.0]])


def _sig(z):
    return 1 / (1 + math.exp(-z))


def _router(kind: str) -> MoEFFN:
    ffn = MoEFFN(tiny_model(n_embd=2, n_head=1, ffn="moe", n_experts=4, top_k=2, router=kind), 8)
    with torch.no_grad():
        ffn.router.weight.copy_(LOGITS.T)
    return ffn


def test_softmax_router_chooses_the_two_largest_and_renormalises():
    g, idx = route(LOGITS, 2, "softmax")
    assert idx.tolist() == [[2, 0], [1, 2]]
    # softmax over the chosen pair: e^2 / (e^2 + e^1) = 1 / (1 + e^-1) for both tokens
    hand = [[1 / (1 + math.exp(-1)), 1 / (1 + math.exp(1))]] * 2
    torch.testing.assert_close(g, torch.tensor(hand), rtol=0, atol=1e-7)
    torch.testing.assert_close(g[0], torch.tensor([0.7310586, 0.2689414]), rtol=0, atol=1e-6)
    # the same as softmax over all four experts, then kept and renormalised over the two
    p = torch.softmax(LOGITS, dim=-1)
    explicit = torch.stack([p[0, [2, 0]] / p[0, [2, 0]].sum(), p[1, [1, 2]] / p[1, [1, 2]].sum()])
    torch.testing.assert_close(g, explicit)


def test_sigmoid_router_chooses_the_same_experts_with_other_weights():
    g, idx = route(LOGITS, 2, "sigmoid")
    assert idx.tolist() == [[2, 0], [1, 2]]  # sigmoid is monotonic: same choice as softmax
    hand = [[_sig(2) / (_sig(2) + _sig(1)), _sig(1) / (_sig(2) + _sig(1))],
            [_sig(-1) / (_sig(-1) + _sig(-2)), _sig(-2) / (_sig(-1) + _sig(-2))]]
    torch.testing.assert_close(g, torch.tensor(hand), rtol=0, atol=1e-7)
    torch.testing.assert_close(g, torch.tensor([[0.5464491, 0.4535509], [0.6928902, 0.3071098]]),
                               rtol=0, atol=1e-6)
    s = torch.sigmoid(LOGITS)
    explicit = torch.stack([s[0, [2, 0]] / s[0, [2, 0]].sum(), s[1, [1, 2]] / s[1, [1, 2]].sum()])
    torch.testing.assert_close(g, explicit)


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_dense_gates_and_the_router_module(kind):
    x = torch.eye(2)  # token i has logits LOGITS[i]
    gates = _router(kind).gates(x)
    g, idx = route(LOGITS, 2, kind)
    expected = torch.zeros(2, 4)
    for t in range(2):
        for j in range(2):
            expected[t, idx[t, j]] = g[t, j]
    torch.testing.assert_close(gates, expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(dense_gates(LOGITS, 2, kind), expected, rtol=0, atol=1e-7)
    assert gates[0, 1] == 0 and gates[0, 3] == 0 and gates[1, 0] == 0 and gates[1, 3] == 0
    torch.testing.assert_close(gates.sum(-1), torch.ones(2))
    assert expert_load(LOGITS, 2, kind) == [0.25, 0.25, 0.5, 0.0]


def _random_moe(kind: str, bias: bool = True, dtype=torch.float32) -> MoEFFN:
    torch.manual_seed(1)
    cfg = tiny_model(n_embd=8, n_head=1, ffn="moe", n_experts=4, top_k=2, router=kind, bias=bias)
    ffn = MoEFFN(cfg, hidden=24).to(dtype)
    with torch.no_grad():
        for p in ffn.parameters():
            p.normal_(0, 0.5)
    return ffn


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
@pytest.mark.parametrize("bias", [True, False])
def test_output_is_the_gated_sum_of_the_chosen_experts(kind, bias):
    ffn = _random_moe(kind, bias)
    x = torch.randn(3, 5, 8)
    out = ffn(x)
    g, idx = route(ffn.router(x), 2, kind)
    explicit = torch.zeros_like(out)
    for b in range(3):
        for t in range(5):
            tok = x[b, t]
            for j in range(2):
                e = int(idx[b, t, j])
                lo, hi = e * 6, (e + 1) * 6  # h_e = 24 // 4
                h = ffn.act(tok @ ffn.c_fc.weight[lo:hi].T + (ffn.c_fc.bias[lo:hi] if bias else 0))
                y = h @ ffn.c_proj.weight[:, lo:hi].T + (ffn.expert_bias[e] if bias else 0)
                explicit[b, t] += g[b, t, j] * y
                torch.testing.assert_close(ffn.expert(tok, e), y)
    torch.testing.assert_close(out, explicit, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_gradients_match_float64_finite_differences(kind):
    ffn = _random_moe(kind, dtype=torch.float64)
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    names = ("router.weight", "c_fc.weight", "expert_bias")
    params = tuple(dict(ffn.named_parameters())[n].detach().clone().requires_grad_() for n in names)

    def f(x, *ps):
        return torch.func.functional_call(ffn, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5)
    f(x, *params).square().sum().backward()
    assert all(torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in (x, *params))


@pytest.mark.parametrize("bias", [True, False])
def test_parameter_count_formula(bias):
    d, layers, E, k = 24, 2, 4, 2
    kw = dict(vocab_size=50, block_size=16, n_head=2, n_embd=d, n_layer=layers, bias=bias)
    moe = GPT(ModelConfig(ffn="moe", n_experts=E, top_k=k, **kw))
    dense = GPT(ModelConfig(**kw))
    counts = moe_param_count(d, 96, E, k, bias)
    assert counts == {"per_expert": 2 * d * 24 + (24 + d if bias else 0), "router": d * E,
                      "total": E * counts["per_expert"] + d * E,
                      "active": k * counts["per_expert"] + d * E,
                      "dense": 2 * d * 96 + (96 + d if bias else 0)}
    assert sum(p.numel() for p in moe.transformer.h[0].mlp.parameters()) == counts["total"]
    assert sum(p.numel() for p in dense.transformer.h[0].mlp.parameters()) == counts["dense"]
    extra = (2 * E - 1) * d if bias else E * d
    assert moe.num_params() - dense.num_params() == layers * extra
    sig = GPT(ModelConfig(ffn="moe", n_experts=E, top_k=k, router="sigmoid", **kw))
    assert sig.num_params() == moe.num_params()  # the routers differ only in the score function


@pytest.mark.parametrize("kw, message", [
    (dict(ffn="moe", n_experts=4, top_k=5), "top_k must be between 1 and 4, got 5"),
    (dict(ffn="moe", top_k=0), "top_k must be between 1 and 4, got 0"),
    (dict(ffn="moe", n_experts=0), "n_experts must be between 1 and 65536, got 0"),
    (dict(ffn="moe", router="relu"), "router must be one of softmax, sigmoid; got 'relu'"),
    (dict(ffn="sparse"), "ffn must be one of dense, moe; got 'sparse'"),
    (dict(ffn="moe", act="swiglu"), "ffn 'moe' takes a plain activation for its experts; "
                                    "'swiglu' is gated"),
    (dict(ffn="moe", n_embd=2, n_head=1, mlp_ratio=1.0, n_experts=4, top_k=1),
     "ffn 'moe': the FFN width mlp_ratio * n_embd = 2 is split between 4 experts, fewer than "
     "one unit each"),
])
def test_config_validation(kw, message):
    with pytest.raises(ActlabError) as err:
        tiny_model(**kw)
    assert str(err.value) == message


def test_config_round_trips_and_merges_typed():
    cfg = TrainConfig(model=tiny_model(ffn="moe", n_experts=3, top_k=1, router="sigmoid"))
    again = TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and again.model.router == "sigmoid" and again.model.n_experts == 3
    merged = merge(TrainConfig(), {"model": {"ffn": "moe"}, "router": "sigmoid", "top_k": 1})
    assert (merged.model.ffn, merged.model.router, merged.model.top_k) == ("moe", "sigmoid", 1)
    with pytest.raises(ActlabError, match="config key 'n_experts' must be int, got '4'"):
        merge(TrainConfig(), {"n_experts": "4"})
    assert ModelConfig().ffn == "dense"  # the default model has no experts


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_training_is_bitwise_reproducible(kind):
    cfg = dict(n_layer=1, ffn="moe", router=kind, steps=3, eval_every=3)
    a = train(tiny_train(**cfg), progress=False)
    b = train(tiny_train(**cfg), progress=False)
    assert a.outcome == b.outcome == "completed"
    losses = [h["train_loss"] for h in a.history if "train_loss" in h]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert losses == [h["train_loss"] for h in b.history if "train_loss" in h]
    assert a.val_loss == b.val_loss
    c = train(tiny_train(**{**cfg, "seed": 1}), progress=False)
    assert [h["train_loss"] for h in c.history if "train_loss" in h] != losses


def test_the_memory_estimate_counts_the_experts_like_the_built_model():
    from actlab.config import ModelConfig
    from actlab.nn.gpt import GPT
    from actlab.sizes import parameter_count

    def both(**kw):
        m = ModelConfig(n_layer=2, n_embd=48, n_head=2, block_size=64, vocab_size=65, **kw)
        return sum(p.numel() for p in GPT(m).parameters()), parameter_count(m, 65)

    (dense_built, dense_est), (moe_built, moe_est) = both(), both(ffn="moe", n_experts=8, top_k=1)
    assert moe_built - dense_built == moe_est - dense_est == 2 * (2 * 8 - 1) * 48

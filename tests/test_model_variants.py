"""Sigmoid attention, the sigmoid attention-output gate and the sigmoid head, on values
that can be computed by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from actlab.nn.gpt import GPT, CausalSelfAttention, sigmoid_attention, sigmoid_head_loss

from conftest import tiny_model


def test_sigmoid_attention_with_zero_scores_gives_hand_values():
    T = 5
    q = torch.zeros(1, 1, T, 4)
    k = torch.randn(1, 1, T, 4)  # scores are 0 whatever k is, because q = 0
    v = torch.ones(1, 1, T, 4)
    # with b = -log(i+1): each of the i+1 visible weights is sigma(-log(i+1)) = 1/(i+2)
    with_bias = sigmoid_attention(q, k, v, bias=True)[0, 0, :, 0]
    expected = torch.tensor([(i + 1) / (i + 2) for i in range(T)])
    torch.testing.assert_close(with_bias, expected)
    # without the bias each weight is sigma(0) = 1/2, so row i sums to (i+1)/2: it grows with n
    no_bias = sigmoid_attention(q, k, v, bias=False)[0, 0, :, 0]
    torch.testing.assert_close(no_bias, torch.tensor([0.5 * (i + 1) for i in range(T)]))


def test_sigmoid_attention_is_causal_and_matches_a_loop():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 8, dtype=torch.float64) for _ in range(3))
    got = sigmoid_attention(q, k, v, bias=True)
    for i in range(6):
        s = (q[..., i:i + 1, :] @ k[..., : i + 1, :].transpose(-2, -1)) / math.sqrt(8) - math.log(i + 1)
        ref = torch.sigmoid(s) @ v[..., : i + 1, :]
        torch.testing.assert_close(got[..., i:i + 1, :], ref)


def test_attention_gate_at_zero_halves_the_softmax_output():
    torch.manual_seed(0)
    cfg_plain = tiny_model(bias=False)
    cfg_gated = tiny_model(bias=False, attention="softmax_gated")
    plain, gated = CausalSelfAttention(cfg_plain), CausalSelfAttention(cfg_gated)
    gated.load_state_dict(plain.state_dict(), strict=False)
    torch.nn.init.zeros_(gated.c_gate.weight)  # sigma(0) = 1/2 on every channel
    x = torch.randn(2, 7, 32)
    torch.testing.assert_close(gated(x), 0.5 * plain(x))


def test_sigmoid_head_starts_at_one_over_vocab_and_loss_is_hand_computed():
    torch.manual_seed(0)
    model = GPT(tiny_model(head="sigmoid", vocab_size=4))
    assert model.head_bias.item() == pytest.approx(-math.log(3))
    logits = torch.zeros(1, 4) + model.head_bias.detach()
    p = torch.sigmoid(logits)
    torch.testing.assert_close(p, torch.full((1, 4), 0.25))
    loss = sigmoid_head_loss(logits, torch.tensor([2]))
    assert loss.item() == pytest.approx(-math.log(0.25) - 3 * math.log(0.75), rel=1e-6)


def test_sigmoid_head_trains_and_differs_from_cross_entropy():
    torch.manual_seed(0)
    model = GPT(tiny_model(head="sigmoid"))
    x = torch.randint(0, 64, (4, 16))
    _, loss0 = model(x, x)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(30):
        _, loss = model(x, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * loss0.item()


def test_two_class_softmax_is_sigmoid_of_the_logit_difference():
    # the article's aside: softmax is a "normalized multi-sigmoid"; for two classes it is exact
    z = torch.randn(1000, 2, dtype=torch.float64) * 5
    torch.testing.assert_close(F.softmax(z, dim=-1)[:, 0], torch.sigmoid(z[:, 0] - z[:, 1]))


@pytest.mark.parametrize("attention", ["softmax_gated", "sigmoid", "sigmoid_nobias"])
def test_every_attention_variant_trains(attention):
    torch.manual_seed(0)
    model = GPT(tiny_model(attention=attention))
    x = torch.randint(0, 64, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        _, loss = model(x, x)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 1.0

"""Sampling: greedy decoding against a hand-rolled argmax loop, seeded reproducibility, and the
frequencies of many draws against softmax(logits / T) (and the sigmoid head's normalised scores)."""

import math

import pytest
import torch

from actlab.config import ModelConfig
from actlab.errors import ActlabError
from actlab.nn.gpt import GPT
from actlab.runs import generate

V, BLOCK = 7, 8


def tiny(head="softmax", seed=0):
    torch.manual_seed(seed)
    # A wide init spreads the logits, so that temperature and head visibly change the distribution.
    cfg = ModelConfig(vocab_size=V, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16, init_std=0.4,
                      head=head)
    return GPT(cfg).eval()


PROMPT = torch.tensor([[1, 4, 2, 6, 0, 3, 5, 1, 2, 2, 4]])  # longer than the context: cropped


def test_greedy_equals_an_argmax_loop():
    model = tiny(seed=3)  # a seed whose greedy path is not one token repeated
    ids = PROMPT.clone()
    with torch.no_grad():
        for _ in range(12):
            logits, _ = model(ids[:, -BLOCK:])
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    out = generate(model, PROMPT, 12, temperature=0)
    assert out.shape == (1, PROMPT.size(1) + 12)
    assert torch.equal(out, ids)
    assert torch.equal(out[:, :PROMPT.size(1)], PROMPT)
    assert len(set(out[0, -12:].tolist())) > 1  # not a constant: the test can tell orders apart


def test_a_seed_gives_the_same_tokens_and_a_tiny_temperature_is_greedy():
    model = tiny()
    draw = lambda seed, t=1.0: generate(model, PROMPT, 30, temperature=t,  # noqa: E731
                                        generator=torch.Generator().manual_seed(seed))
    state = torch.get_rng_state()
    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is never drawn from
    greedy = generate(model, PROMPT, 30, temperature=0)
    assert torch.equal(draw(5, 1e-6), greedy)
    assert not torch.equal(draw(5, 1.0), greedy)


def frequencies(model, n, **kw):
    g = torch.Generator().manual_seed(123)
    out = generate(model, PROMPT[:, -4:].repeat(n, 1), 1, generator=g, **kw)[:, -1]
    return torch.bincount(out, minlength=V).double() / n


def next_logits(model):
    with torch.no_grad():
        return model(PROMPT[:, -4:])[0][0, -1].double()


def check_matches(freq, p, n):
    """max |freq - p| within 5 binomial standard errors, and Pearson's chi-square below the
    0.999 quantile of its distribution (df = support - 1; 22.46 for df 6)."""
    se = torch.sqrt(p * (1 - p) / n)
    assert torch.all((freq - p).abs() <= 5 * se + 1e-12), (freq, p)
    support = p > 0
    chi2 = float((n * (freq[support] - p[support]) ** 2 / p[support]).sum())
    critical = {2: 13.82, 6: 22.46}[int(support.sum()) - 1]
    assert chi2 < critical, chi2


N = 40_000


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_draw_frequencies_follow_softmax_of_logits_over_t(temperature):
    model = tiny()
    logits = next_logits(model)
    p = torch.softmax(logits / temperature, -1)
    assert (p - torch.softmax(logits, -1)).abs().max() > 0.05 or temperature == 1.0
    check_matches(frequencies(model, N, temperature=temperature), p, N)


def test_top_k_draws_only_the_best_k_renormalised():
    model = tiny()
    logits = next_logits(model)
    best = torch.topk(logits, 3).indices
    p = torch.zeros(V, dtype=torch.double)
    p[best] = torch.softmax(logits[best] / 0.8, -1)
    freq = frequencies(model, N, temperature=0.8, top_k=3)
    assert freq[p == 0].sum() == 0
    check_matches(freq, p, N)


def test_a_sigmoid_head_draws_its_normalised_sigmoid_scores():
    model = tiny(head="sigmoid", seed=1)
    logits = next_logits(model)
    p = torch.sigmoid(logits) / torch.sigmoid(logits).sum()
    assert (p - torch.softmax(logits, -1)).abs().max() > 0.05  # a softmax here would fail
    check_matches(frequencies(model, N, temperature=1.0), p, N)
    # and at T: proportional to sigmoid(z) ** (1 / T)
    q = torch.sigmoid(logits) ** 2
    check_matches(frequencies(model, N, temperature=0.5), q / q.sum(), N)


@pytest.mark.parametrize("kw, needle", [
    ({"temperature": -1.0}, "temperature"), ({"temperature": math.nan}, "temperature"),
    ({"top_k": 0}, "top_k"), ({"max_new_tokens": -1}, "tokens"),
])
def test_bad_settings_are_one_line_errors(kw, needle):
    args = {"max_new_tokens": 3, **kw}
    with pytest.raises(ActlabError) as e:
        generate(tiny(), PROMPT, **args)
    assert needle in str(e.value) and "\n" not in str(e.value)

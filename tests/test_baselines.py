"""n-gram baselines: values worked by hand, normalised distributions, sparse BPE-sized
vocabularies, the disk cache, and the numbers `actlab train` reports."""
import json
import math

import numpy as np
import pytest

from actlab.data import prepare
from actlab.data.baselines import _Level, _unigram, corpus_baselines, discount, ngram_baselines
from actlab.training.loop import train

from conftest import tiny_train


def test_values_worked_by_hand():
    # Vocabulary {a, b, c} = {0, 1, 2}; train "a b a b c", validation "b a b c": the scored
    # tokens are val[2:] = b (after "b a") and c (after "a b").
    out = ngram_baselines([0, 1, 0, 1, 2], [1, 0, 1, 2], 3)
    # Unigram: counts a 2, b 2, c 1 (total 5; n1 = 1, n2 = 2, D = 1/5).
    # P(b) = (2 - .2)/5 + .2 * 3/5 * 1/3 = .40; P(c) = (1 - .2)/5 + .04 = .20.
    assert out["unigram"] == pytest.approx(-(math.log(0.40) + math.log(0.20)) / 2, rel=1e-12)
    # Bigram: ab 2, ba 1, bc 1 (n1 = 2, n2 = 1, D = 1/2). Continuation unigram: each of a, b, c
    # follows one distinct token (D = 1), so P_cont = 1/3 each.
    # P(b | a) = (2 - .5)/2 + .5 * 1/2 * 1/3 = 5/6; P(c | b) = (1 - .5)/2 + .5 * 2/2 * 1/3 = 5/12.
    assert out["bigram"] == pytest.approx(-(math.log(5 / 6) + math.log(5 / 12)) / 2, rel=1e-12)
    # Trigram: aba, bab, abc once each (D = 1), so all mass goes to the continuation bigram,
    # whose counts ab, ba, bc are 1 each (D = 1) and back off to P_cont = 1/3: both tokens 1/3.
    assert out["trigram"] == pytest.approx(math.log(3), rel=1e-12)
    assert out["discounts"] == {"unigram": 0.2, "bigram": 0.5, "bigram_cont": 1.0, "trigram": 1.0}
    assert out["tokens"] == 2


def test_discount_is_neys_estimate():
    assert discount(np.array([1, 1, 1, 2, 5])) == pytest.approx(3 / (3 + 2 * 1))
    assert discount(np.array([7, 9])) == 0.5  # no singletons or doubletons: a neutral 1/2


def test_every_level_is_a_distribution_over_the_vocabulary():
    rng = np.random.default_rng(0)
    V = 7
    t = rng.integers(0, V, 400)
    keys, counts = np.unique(t[:-1] * V + t[1:], return_counts=True)
    level = _Level(keys, counts, V)
    w = np.arange(V)
    lower = _unigram(np.bincount(keys % V, minlength=V), w, V)
    assert lower.sum() == pytest.approx(1.0, rel=1e-12)
    for h in range(V):
        p = level.prob(np.full(V, h), w, lower)
        assert (p > 0).all() and p.sum() == pytest.approx(1.0, rel=1e-12)
    unseen = level.prob(np.full(V, V + 1), w, lower)  # a history never seen: the lower order
    np.testing.assert_allclose(unseen, lower)


def test_more_context_helps_on_text_with_structure():
    # Tokens from a peaked second-order Markov chain: each order knows more than the last,
    # and the trigram model comes near the chain's own entropy.
    rng = np.random.default_rng(1)
    V = 5
    chain = rng.dirichlet(np.full(V, 0.3), size=(V, V))  # P(next | two before)
    seq = [0, 1]
    for u in rng.random(60_000):
        seq.append(int(np.searchsorted(np.cumsum(chain[seq[-2], seq[-1]]), u * 0.999999)))
    out = ngram_baselines(seq[:54_000], seq[54_000:], V)
    assert out["unigram"] > out["bigram"] > out["trigram"]
    s = np.array(seq[54_000:])
    entropy = -np.mean(np.log(chain[s[:-2], s[1:-1], s[2:]]))
    assert out["trigram"] == pytest.approx(entropy, abs=0.02)


def test_sparse_counts_for_a_large_vocabulary():
    rng = np.random.default_rng(2)
    V = 4096
    ids = rng.integers(0, V, 50_000)
    out = ngram_baselines(ids[:45_000], ids[45_000:], V)
    # Random tokens: nothing beyond the unigram to learn, and every order is close to log V.
    for order in ("unigram", "bigram", "trigram"):
        assert math.log(V) - 0.1 < out[order] < math.log(V) + 0.5, order
    with pytest.raises(ValueError, match="must lie in"):
        ngram_baselines([0, 1, 5], [0, 1, 2], 3)


def test_corpus_baselines_are_cached_by_corpus_and_split(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("the cat sat on the mat. " * 60, encoding="utf-8")
    data = prepare(str(path), "char", block_size=8)
    first = corpus_baselines(data, cache=tmp_path / "cache")
    files = list((tmp_path / "cache").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["trigram"] == first["trigram"]
    assert corpus_baselines(data, cache=tmp_path / "cache") == first
    other = prepare(str(path), "char", block_size=8, val_fraction=0.2)
    corpus_baselines(other, cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2  # another split, another entry
    assert first["corpus_hash"] == data.text_hash and first["corpus"] == data.name


def test_train_reports_the_baselines_beside_its_loss(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("to be or not to be, that is the question. " * 40, encoding="utf-8")
    data = prepare(str(path), "char", block_size=16)
    run = train(tiny_train(steps=4), tmp_path / "run", data=data, progress=False)
    want = ngram_baselines(data.train_ids, data.val_ids, data.vocab_size)
    for order in ("unigram", "bigram", "trigram"):
        assert run.baselines[order] == pytest.approx(want[order], rel=1e-12)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["baselines"]["trigram"] == pytest.approx(want["trigram"], rel=1e-12)

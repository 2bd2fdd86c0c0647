"""The plain deep MLP, its corpus task and training loop: init variances against the analytic
values, bitwise determinism, learning beyond the unigram baseline, and the probes on it."""

import math

import pytest
import torch
import torch.nn.functional as F

from actlab.errors import ActlabError
from actlab.data.chartask import char_task
from actlab.nn.mlp import DeepMLP, default_init
from actlab.probes import mlp_layers
from actlab.training.mlp_loop import train_mlp


@pytest.fixture(scope="module")
def task():
    return char_task()


def test_init_variances_match_glorot_and_he():
    n = 256
    xavier = DeepMLP(n, n, 2, 10, act="tanh", init="xavier", seed=0)
    kaiming = DeepMLP(n, n, 2, 10, act="relu", init="kaiming", seed=0)
    w = xavier.fc[1].weight.detach().double()
    # Glorot & Bengio 2010 eq. 16: U(-a, a), a = sqrt(6 / (fan_in + fan_out)), Var = 2 / (in + out).
    assert w.var().item() == pytest.approx(2 / (n + n), rel=0.03)
    assert w.abs().max().item() <= math.sqrt(6 / (n + n))
    assert w.abs().max().item() > 0.99 * math.sqrt(6 / (n + n))
    # He et al. 2015 eq. 10: N(0, 2 / fan_in); the head (fan_in n, fan_out 10) too.
    assert kaiming.fc[1].weight.double().var().item() == pytest.approx(2 / n, rel=0.03)
    assert kaiming.head.weight.double().var().item() == pytest.approx(2 / n, rel=0.15)
    assert kaiming.fc[0].weight.double().mean().item() == pytest.approx(0.0, abs=0.005)
    for model in (xavier, kaiming):
        assert all(lin.bias.abs().sum().item() == 0.0 for lin in [*model.fc, model.head])


def test_depth_width_and_parameter_count():
    n_in, width, depth, n_out = 12, 7, 5, 3
    model = DeepMLP(n_in, width, depth, n_out, act="sigmoid", init="xavier")
    assert model.depth == depth == len(model.acts)
    expected = (n_in * width + width) + (depth - 1) * (width * width + width) + (width * n_out + n_out)
    assert sum(p.numel() for p in model.parameters()) == expected
    # No residual path and no norm: with the identity activation the net is one affine map.
    linear = DeepMLP(4, 6, 3, 2, act="identity", init="xavier", seed=1)
    x = torch.randn(5, 4)
    w = linear.head.weight @ linear.fc[2].weight @ linear.fc[1].weight @ linear.fc[0].weight
    torch.testing.assert_close(linear(x), x @ w.T)  # biases are zero at init


def test_bad_arguments_are_refused():
    with pytest.raises(ActlabError, match="gated"):
        DeepMLP(4, 4, 2, 2, act="swiglu")
    with pytest.raises(ActlabError, match="init"):
        DeepMLP(4, 4, 2, 2, act="relu", init="orthogonal")
    with pytest.raises(ActlabError, match="depth"):
        DeepMLP(4, 4, 0, 2)
    assert default_init("sigmoid") == "xavier" and default_init("gelu") == "kaiming"


def test_task_windows_are_the_corpus(task):
    x, y = task.val_set(4)
    assert task.n_in == task.context * task.embed_dim == x.shape[1]
    first = task.embedding[task.val_ids[: task.context]].reshape(-1)
    torch.testing.assert_close(x[0], first, rtol=0, atol=0)
    assert y[0].item() == task.val_ids[task.context].item()
    # The embedding is fixed N(0, 1), whatever the run's seed.
    assert task.embedding.mean().abs().item() < 0.1 and abs(task.embedding.std().item() - 1) < 0.1
    assert char_task() is task  # built once per process


def _run(task, seed, steps=8, act="tanh"):
    model = DeepMLP(task.n_in, 16, 3, task.vocab_size, act=act, init=default_init(act), seed=seed)
    return train_mlp(model, task, steps, optimizer="adamw", lr=3e-3, batch_size=16, seed=seed,
                     eval_size=256)


def test_training_is_bitwise_deterministic(task):
    a, b, c = _run(task, 0), _run(task, 0), _run(task, 1)
    assert a["history"] == b["history"]  # exact float equality, every step
    assert a["history"] != c["history"]
    assert a["outcome"] == "completed" and a["steps"] == 8
    assert [r["step"] for r in a["history"] if "val_loss" in r] == [1, 3, 5, 7]  # every steps // 4


def test_a_tiny_mlp_learns_beyond_unigram(task):
    # The best context-free predictor scores the cross-entropy of the val characters under the
    # train unigram distribution; using the context must beat it.
    p = torch.bincount(task.train_ids, minlength=task.vocab_size).double()
    p /= p.sum()
    unigram = -torch.log(p[task.val_ids] + 1e-12).mean().item()
    model = DeepMLP(task.n_in, 32, 2, task.vocab_size, act="relu", init="kaiming", seed=0)
    out = train_mlp(model, task, 150, optimizer="sgd", lr=0.3, batch_size=32, seed=0)
    assert out["history"][0]["train_loss"] > unigram + 0.5
    assert out["val_loss"] < unigram - 0.1


class _Recorder:
    def __init__(self):
        self.calls = []

    def after_backward(self, step, model):
        self.calls.append(("backward", step, model.fc[0].weight.grad is not None))

    def after_step(self, step, model):
        self.calls.append(("step", step, model.fc[0].weight.grad is not None))


def test_callback_protocol_matches_the_trainer(task):
    rec = _Recorder()
    model = DeepMLP(task.n_in, 8, 2, task.vocab_size, act="relu", seed=0)
    train_mlp(model, task, 2, lr=0.1, batch_size=4, callbacks=(rec,))
    assert rec.calls == [("backward", 0, True), ("step", 0, False),
                         ("backward", 1, True), ("step", 1, False)]


def test_probes_measure_the_plain_mlp(task):
    from actlab.probes import ActivationProbe, GradNormProbe

    model = DeepMLP(task.n_in, 16, 3, task.vocab_size, act="sigmoid", init="xavier", seed=0)
    layers = mlp_layers(model)
    assert [layer.consumer for layer in layers] == [model.fc[1], model.fc[2], model.head]
    x, y = task.val_set(32)
    pre = []

    def keep(module, args, out):
        out.retain_grad()
        pre.append(out)

    handles = [lin.register_forward_hook(keep) for lin in model.fc]
    with GradNormProbe(layers) as grads, ActivationProbe(layers) as acts:
        F.cross_entropy(model(x), y).backward()
        g = grads.measure(0)
        a = acts.record(0)
    for h in handles:
        h.remove()
    for i, layer in enumerate(layers):
        row = g[layer.name]
        assert row["fc.weight"] == pytest.approx(model.fc[i].weight.grad.norm().item(), rel=1e-5)
        assert row["pre_act"] == pytest.approx(pre[i].grad.norm().item(), rel=1e-5)
        s = torch.sigmoid(pre[i])
        saturated = ((s * (1 - s)).abs() < 0.01).double().mean().item()
        assert a[layer.name]["saturated"] == pytest.approx(saturated, abs=1e-9)
        assert a[layer.name]["mean"] == pytest.approx(s.mean().item(), rel=1e-5)

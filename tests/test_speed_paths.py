"""The compiled training path: its GELU rewrite against aten, parity and determinism against
eager, the fall-back when compilation fails, and the rule that callbacks keep training eager."""

import json
import warnings

import pytest
import torch
import torch.nn.functional as F

from actlab.training import compile as actlab_compile
from actlab.training.compile import compile_model, gelu_tanh_sigmoid, gelu_tanh_sigmoid_backward
from actlab.data import prepare
from actlab.nn.gpt import GPT
from actlab.training.loop import train

from conftest import tiny_model, tiny_train

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind. " * 40


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return prepare(str(path), "char", block_size=16)


def losses(result) -> list[float]:
    return [row["train_loss"] for row in result.history]


def test_sigmoid_form_of_tanh_gelu_matches_aten_forward_and_backward():
    # x (1 + tanh u) / 2 = x sigmoid(2u): equal in real arithmetic, so float32 may differ by a
    # few ulp only; the extremes check that neither form overflows into NaN where aten does not.
    x = torch.cat([torch.linspace(-12, 12, 4001), torch.tensor([-400.0, -30.0, 30.0, 400.0])])
    grad = torch.linspace(-2, 2, x.numel())
    expected = F.gelu(x, approximate="tanh")
    expected_grad = torch.ops.aten.gelu_backward(grad, x, approximate="tanh")
    torch.testing.assert_close(gelu_tanh_sigmoid(x), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gelu_tanh_sigmoid_backward(grad, x), expected_grad, rtol=1e-5, atol=1e-6)
    # and the backward is the derivative of the forward (float64, so the check is sharp)
    x64 = torch.linspace(-6, 6, 301, dtype=torch.float64, requires_grad=True)
    gelu_tanh_sigmoid(x64).sum().backward()
    torch.testing.assert_close(gelu_tanh_sigmoid_backward(torch.ones_like(x64), x64.detach()), x64.grad)


def test_failed_compilation_warns_once_and_runs_eagerly(monkeypatch):
    def broken_backend():
        def backend(graph, example_inputs):
            raise RuntimeError("no C++ compiler here")
        return backend

    monkeypatch.setattr(actlab_compile, "_cpu_backend", broken_backend)
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = GPT(tiny_model(act="gelu_tanh"))
    x = torch.randint(0, 64, (2, 16))
    forward = compile_model(model)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*no C\\+\\+ compiler"):
        logits, loss = forward(x, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the second call neither warns nor retries
        logits2, _ = forward(x, x)
    eager_logits, eager_loss = model(x, x)
    assert torch.equal(logits, eager_logits) and torch.equal(logits2, eager_logits)
    assert torch.equal(loss, eager_loss)


def test_a_model_error_is_not_taken_for_a_compiler_failure():
    model = GPT(tiny_model())
    forward = compile_model(model)
    with pytest.raises(ValueError, match="exceeds block_size"):
        forward(torch.zeros(1, 17, dtype=torch.long))


def test_callbacks_keep_training_eager_and_bitwise_equal(bundle, tmp_path):
    class Count:
        calls = 0

        def after_step(self, step, model):
            Count.calls += 1

    with pytest.warns(RuntimeWarning, match="not compiled"):
        a = train(tiny_train(steps=6, eval_every=3), tmp_path / "a", data=bundle, progress=False,
                  callbacks=(Count(),), compile=True)
    b = train(tiny_train(steps=6, eval_every=3), data=bundle, progress=False, callbacks=(Count(),))
    assert Count.calls == 12
    assert losses(a) == losses(b)
    assert json.loads((tmp_path / "a" / "env.json").read_text())["compile"] is False


@pytest.mark.slow
def test_compiled_forward_and_gradients_match_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = GPT(tiny_model(act="gelu_tanh", vocab_size=64))
    x = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, dims=1)
    logits, loss = compile_model(model)(x, y)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    eager_logits, eager_loss = model(x, y)
    eager_loss.backward()
    torch.testing.assert_close(logits, eager_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-6, atol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_compiled_training_is_deterministic_and_follows_eager(bundle, tmp_path):
    torch._dynamo.reset()
    cfg = lambda: tiny_train(act="gelu_tanh", steps=20, eval_every=10)  # noqa: E731
    a = train(cfg(), tmp_path / "a", data=bundle, progress=False, compile=True)
    b = train(cfg(), data=bundle, progress=False, compile=True)
    eager = train(cfg(), data=bundle, progress=False)
    assert losses(a) == losses(b)
    assert [r.get("val_loss") for r in a.history] == [r.get("val_loss") for r in b.history]
    # same math up to float rounding: 20 steps of AdamW keep the histories within 1e-4
    assert losses(a) == pytest.approx(losses(eager), rel=1e-4)
    assert json.loads((tmp_path / "a" / "env.json").read_text())["compile"] is True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("compiled", [False, True])
def test_cuda_training_runs_and_learns(bundle, dtype, compiled):
    cfg = tiny_train(act="gelu_tanh", steps=40, eval_every=20, device="cuda", dtype=dtype)
    result = train(cfg, data=bundle, progress=False, compile=compiled)
    vals = [r["val_loss"] for r in result.history if "val_loss" in r]
    assert result.outcome == "completed" and vals[-1] < vals[0]

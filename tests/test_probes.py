"""Probes against analytic values, brute-force autograd references and bitwise determinism."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from actlab import activations
from actlab.data import prepare
from actlab.nn.gpt import GPT
from actlab.probes import (
    ActivationProbe,
    GradNormProbe,
    LayerRef,
    PathStraightness,
    SignCoherenceProbe,
    attach,
    gpt_layers,
)
from actlab.training.loop import train

from conftest import tiny_model, tiny_train


def act_layer(name: str, width: int = 4, consumer: nn.Linear | None = None) -> LayerRef:
    """A LayerRef around a bare activation module (no block): enough for the activation probe."""
    consumer = consumer or nn.Linear(width, 3)
    return LayerRef(name=name, act=activations.get(name), spec=activations.get_spec(name),
                    consumer=consumer, weights={"weight": consumer.weight})


def tiny_gpt(seed: int = 0, **kw) -> tuple[GPT, torch.Tensor, torch.Tensor]:
    kw.setdefault("kernels", "eager")  # the probes hook module calls the fused kernels skip
    torch.manual_seed(seed)
    model = GPT(tiny_model(**kw))
    gen = torch.Generator().manual_seed(seed)
    tok = torch.randint(0, 64, (3, 17), generator=gen)
    return model, tok[:, :-1].contiguous(), tok[:, 1:].contiguous()


def all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in model.modules())


# -- gradient norms ---------------------------------------------------------------------


def test_single_linear_weight_grad_norm_is_analytic():
    # loss = |W x|^2 / 2, so dL/dW = (W x) x^T with norm |W x| |x| = sqrt(26) sqrt(5).
    lin = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    act = activations.get("identity")
    layer = LayerRef("lin", act, activations.get_spec("identity"), nn.Linear(3, 1),
                     {"weight": lin.weight})
    with GradNormProbe([layer]) as probe:
        out = act(lin(torch.tensor([[1.0, 2.0]])))
        (0.5 * out.square().sum()).backward()
        probe.after_backward(0)
    row = probe.records[0]["lin"]
    assert row["weight"] == pytest.approx(math.sqrt(130), rel=1e-6)
    assert row["ffn"] == pytest.approx(math.sqrt(130), rel=1e-6)
    assert row["pre_act"] == pytest.approx(math.sqrt(26), rel=1e-6)  # dL/d(pre-act) = W x
    assert "branch" not in row  # no block: no residual measurements


def test_gpt_layers_grad_norms_equal_the_grad_tensors():
    model, x, y = tiny_gpt()
    layers = gpt_layers(model)
    assert [l.name for l in layers] == ["h.0", "h.1"]
    assert layers[1].act is model.transformer.h[1].mlp.act
    assert layers[1].consumer is model.transformer.h[1].mlp.c_proj
    with GradNormProbe(layers) as probe:
        model(x, y)[1].backward()
        probe.after_backward(0, model)
    for i, block in enumerate(model.transformer.h):
        row = probe.records[0][f"h.{i}"]
        fc, proj = block.mlp.c_fc.weight.grad.norm().item(), block.mlp.c_proj.weight.grad.norm().item()
        assert row["c_fc.weight"] == pytest.approx(fc, rel=1e-5)
        assert row["c_proj.weight"] == pytest.approx(proj, rel=1e-5)
        assert row["ffn"] == pytest.approx(math.hypot(fc, proj), rel=1e-5)


def reference_stream_grads(model, x, y) -> dict:
    """The same quantities by plain autograd, in a pass with no probe attached: grads of the
    block input and output, of the activation input, and ln_2's vector-Jacobian product."""
    saved, handles = {}, []
    for i, block in enumerate(model.transformer.h):
        handles.append(block.register_forward_hook(
            lambda m, a, o, i=i: saved.update({("in", i): a[0], ("out", i): o})))
        handles.append(block.ln_2.register_forward_hook(
            lambda m, a, o, i=i: saved.update({("ln2_in", i): a[0], ("ln2_out", i): o})))
        handles.append(block.mlp.act.register_forward_hook(
            lambda m, a, o, i=i: saved.update({("pre", i): a[0]})))
    loss = model(x, y)[1]
    for h in handles:
        h.remove()
    n = len(model.transformer.h)
    keys = [(k, i) for i in range(n) for k in ("in", "out", "ln2_out", "pre")]
    grads = dict(zip(keys, torch.autograd.grad(loss, [saved[k] for k in keys], retain_graph=True)))
    ref = {}
    for i in range(n):
        (branch,) = torch.autograd.grad(saved[("ln2_out", i)], saved[("ln2_in", i)],
                                        grad_outputs=grads[("ln2_out", i)], retain_graph=True)
        ref[f"h.{i}"] = {"stream": grads[("in", i)].norm().item(),
                         "residual": grads[("out", i)].norm().item(),
                         "branch": branch.norm().item(), "pre_act": grads[("pre", i)].norm().item()}
    return ref


@pytest.mark.parametrize("act", ["sigmoid", "swiglu"])
def test_branch_and_residual_gradients_match_autograd(act):
    model, x, y = tiny_gpt(act=act)
    ref = reference_stream_grads(model, x, y)
    with GradNormProbe(gpt_layers(model)) as probe:
        model(x, y)[1].backward()
        probe.after_backward(0, model)
    rec = probe.records[0]
    for name, expected in ref.items():
        for key, value in expected.items():
            assert value > 0 and math.isfinite(value)
            assert rec[name][key] == pytest.approx(value, rel=1e-5), (name, key)
        assert rec[name]["branch_ratio"] == pytest.approx(rec[name]["branch"] / rec[name]["residual"])
    # Block 0's output is block 1's input: the same gradient seen from both sides.
    assert rec["h.0"]["residual"] == pytest.approx(rec["h.1"]["stream"], rel=1e-6)


def test_without_residual_connections_there_is_no_identity_path():
    model, x, y = tiny_gpt(residual=False)
    with GradNormProbe(gpt_layers(model)) as probe:
        model(x, y)[1].backward()
        probe.after_backward(0, model)
    for name in ("h.0", "h.1"):
        row = probe.records[0][name]
        assert row["residual"] is None and row["branch_ratio"] is None
        assert row["branch"] > 0 and row["stream"] > 0 and math.isfinite(row["branch"])


# -- activation statistics --------------------------------------------------------------


def run_act(name: str, x: torch.Tensor, **kw) -> dict:
    layer = act_layer(name, width=x.shape[-1] // (2 if activations.get_spec(name).gated else 1))
    with ActivationProbe([layer], **kw) as probe:
        layer.act(x)
        return probe.record(0)[name]


def test_saturation_uses_the_activations_own_derivative():
    assert activations.derivative("sigmoid", torch.zeros(1)).item() == pytest.approx(0.25)
    at_zero = run_act("sigmoid", torch.zeros(8, 4))
    assert at_zero["saturated"] == 0.0
    assert at_zero["mean"] == pytest.approx(0.5) and at_zero["std"] == pytest.approx(0.0, abs=1e-6)
    far = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    assert run_act("sigmoid", far)["saturated"] == 1.0  # sigma'(10) = 4.5e-5
    assert run_act("identity", far)["saturated"] == 0.0
    # The 0.01 threshold sits at |x| = 4.59 for sigmoid: sigma'(4.5) = 0.0104, sigma'(4.7) = 0.0089.
    assert run_act("sigmoid", torch.tensor([[4.5, -4.5, 4.7, -4.7]]))["saturated"] == 0.5


def test_relu_on_negative_inputs_is_all_dead():
    stats = run_act("relu", -torch.rand(6, 4) - 0.1)
    assert stats["dead"] == 1.0 and stats["saturated"] == 1.0 and stats["mean"] == 0.0
    assert run_act("relu", torch.rand(6, 4) + 0.1)["dead"] == 0.0


def test_gated_entries_are_measured_on_the_gate_half():
    gate = torch.tensor([[10.0, -10.0, 10.0]])
    up = torch.tensor([[1.0, 2.0, 3.0]])
    glu = run_act("glu", torch.cat([gate, up], -1))
    assert glu["saturated"] == 1.0 and glu["dead"] == 0.0
    reglu = run_act("reglu", torch.cat([-gate.abs(), up], -1))  # gate negative, up nonzero
    assert reglu["dead"] == 1.0 and reglu["mean"] == 0.0
    assert run_act("bilinear", torch.cat([gate, up], -1))["saturated"] == 0.0


def test_histogram_has_fixed_edges_and_clamps_into_end_bins():
    values = torch.tensor([[-5.0, -3.0, 0.0, 0.05, 2.999, 3.0, 7.0, float("nan")]])
    hist = run_act("identity", values)["hist"]
    assert len(hist) == 61 and sum(hist) == 7  # NaN is not counted
    assert hist[0] == 2 and hist[30] == 1 and hist[31] == 1 and hist[60] == 3

    gen = torch.Generator().manual_seed(0)
    x = 2.0 * torch.randn(64, 32, generator=gen)
    layer = act_layer("tanh", 32)
    with ActivationProbe([layer]) as probe:
        y = layer.act(x)
        stats = probe.record(0)["tanh"]
    ref, _ = np.histogram(np.clip(y.numpy(), -3, 3), bins=np.array(probe.edges))
    assert stats["hist"] == ref.tolist()
    assert stats["mean"] == pytest.approx(float(y.double().mean()), abs=1e-6)
    assert stats["std"] == pytest.approx(float(y.double().std(unbiased=False)), rel=1e-5)


def test_activation_probe_works_under_no_grad_and_subsamples_by_stride():
    model, x, _ = tiny_gpt(act="gelu")
    model.eval()
    with ActivationProbe(gpt_layers(model), max_rows=10) as probe, torch.no_grad():
        model(x)
        rec = probe.record(0)
    # 3 x 16 = 48 tokens, stride ceil(48 / 10) = 5 -> tokens 0, 5, ..., 45: 10 rows of width 128.
    assert rec["h.0"]["n"] == rec["h.1"]["n"] == 10 * 128
    assert 0 < rec["h.0"]["std"] < 10
    with ActivationProbe(gpt_layers(model)) as probe, torch.inference_mode():
        model(x)
        assert probe.record(0)["h.0"]["saturated"] < 0.1  # autograd off, f' still right


def test_in_a_training_loop_eval_forwards_are_ignored():
    model, x, y = tiny_gpt()
    with ActivationProbe(gpt_layers(model)) as probe:
        model(x, y)[1].backward()
        probe.after_backward(0, model)
        model.eval()
        with torch.no_grad():
            model(x)  # a validation pass between steps
        model.train()
        probe.after_backward(1, model)  # nothing ran in training mode for step 1
    assert [r["step"] for r in probe.records] == [0]


# -- sign coherence ---------------------------------------------------------------------


def test_positive_inputs_give_single_signed_rows():
    model, x, y = tiny_gpt(act="sigmoid")
    with SignCoherenceProbe(gpt_layers(model)) as probe:
        model(x, y)[1].backward()
        probe.after_backward(0, model)
    for name in ("h.0", "h.1"):
        rec = probe.records[0][name]
        assert rec["single_signed"] == 1.0 and rec["coherence"] == 1.0
        assert rec["pairs"] == 48 * 32  # every token, every output row (delta != 0)


def test_zero_centred_inputs_give_the_binomial_coherence():
    # a_j = +-1 at random: |P - M| / d has mean E|2B - d| / d with B ~ Binomial(d, 1/2).
    d, n = 64, 512
    expected = sum(math.comb(d, b) * abs(2 * b - d) for b in range(d + 1)) / 2**d / d  # 0.0993
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, d, generator=gen)
    lin = nn.Linear(d, 8)
    layer = LayerRef("lin", nn.Identity(), activations.get_spec("identity"), lin, {})
    with SignCoherenceProbe([layer]) as probe:
        lin(a).square().sum().backward()
        rec = probe.record(0)["lin"]
    # sd of one token's value is 0.075, so the mean of 512 is within 0.02 (6 sd).
    assert rec["coherence"] == pytest.approx(expected, abs=0.02)
    assert rec["single_signed"] == 0.0  # probability 2^-63 per token


@pytest.mark.parametrize("max_rows", [100, 3])
def test_sign_coherence_equals_brute_force_per_example_gradients(max_rows):
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(6, 5, generator=gen)
    a[0] = a[0].abs()  # a single-signed token
    a[1, :2] = 0.0  # zeros do not count as entries
    a[5] = 0.0  # a token with no nonzero input: its rows have no sign
    lin = nn.Linear(5, 4)
    mask = torch.ones(6, 4)
    mask[4, :3] = 0.0  # rows whose delta is 0
    mask[3] = 0.0
    layer = LayerRef("lin", nn.Identity(), activations.get_spec("identity"), lin, {})
    with SignCoherenceProbe([layer], max_rows=max_rows) as probe:
        (lin(a).square() * mask).sum().backward()
        rec = probe.record(0)["lin"]

    # Brute force: each token's own weight gradient by autograd, rows inspected one by one.
    stride = math.ceil(6 / max_rows)
    values, single = [], []
    for n in range(0, 6, stride):
        (g,) = torch.autograd.grad((lin(a[n]).square() * mask[n]).sum(), lin.weight)
        for row in g:
            nz = row[row != 0]
            if len(nz):
                values.append(abs(torch.sign(nz).sum().item()) / len(nz))
                single.append(float((nz > 0).all() or (nz < 0).all()))
    assert rec["pairs"] == len(values)
    assert rec["coherence"] == pytest.approx(sum(values) / len(values), rel=1e-12)
    assert rec["single_signed"] == pytest.approx(sum(single) / len(single), rel=1e-12)
    assert 0 < rec["single_signed"] < 1


# -- path straightness ------------------------------------------------------------------


def walk(moves: list[list[float]]) -> PathStraightness:
    theta = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    probe = PathStraightness([theta])
    with probe:
        assert math.isnan(probe.value())
        for step, move in enumerate(moves):
            with torch.no_grad():
                theta += torch.tensor(move, dtype=torch.float64)
            probe.after_step(step)
    return probe


def test_path_straightness_analytic_cases():
    assert walk([[3.0, 4.0]] * 5).value() == 1.0  # a straight line
    assert walk([[3.0, 4.0], [-3.0, -4.0]] * 3).value() == 0.0  # there and back
    # Zig-zag at +-45 degrees: 2k steps of length sqrt(2) go 2k forward.
    zigzag = walk([[1.0, 1.0], [1.0, -1.0]] * 4)
    assert zigzag.value() == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    assert zigzag.records[-1]["path_length"] == pytest.approx(8 * math.sqrt(2), rel=1e-12)
    assert zigzag.summary()["steps"] == 8


# -- attaching and removing -------------------------------------------------------------


def test_hooks_are_removed_after_the_block_and_on_exceptions():
    model, x, y = tiny_gpt(act="swiglu")
    with attach(model) as probes:
        assert all_hooks(model) > 0
        loss = model(x, y)[1]
    assert all_hooks(model) == 0
    loss.backward()  # tensor hooks left on this graph must do nothing now
    assert probes.grad.records == [] and probes.sign._pending == {}

    with pytest.raises(RuntimeError, match="boom"):
        with attach(model):
            model(x, y)[1].backward()
            raise RuntimeError("boom")
    assert all_hooks(model) == 0
    with pytest.raises(TypeError, match="LayerRef"):
        attach(nn.Linear(2, 2))  # not a GPT: its layers must be listed


def test_every_n_steps_and_flat_history():
    model, x, y = tiny_gpt()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with attach(model, every=2) as probes:
        for step in range(5):
            model(x, y)[1].backward()
            skipped = not (probes.acts._pending or probes.grad._pending or probes.sign._pending)
            assert skipped == (step % 2 == 1)  # hooks do no work on unrecorded steps
            probes.after_backward(step, model)
            opt.step()
            opt.zero_grad()
            probes.after_step(step, model)
    for probe in probes.probes:
        assert [r["step"] for r in probe.records] == [0, 2, 4]
    assert probes.path.steps == 5
    rows = probes.history()
    assert [r["step"] for r in rows] == [0, 2, 4]
    assert rows[1]["grad/h.1/ffn"] == probes.grad.records[1]["h.1"]["ffn"]
    assert rows[2]["path/straightness"] == probes.path.value()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text("The quick brown fox jumps over the lazy dog. " * 80, encoding="utf-8")
    return prepare(str(path), "char", block_size=16)


@pytest.mark.parametrize("act", ["sigmoid", "swiglu"])
def test_probes_leave_training_bitwise_identical(bundle, act):
    cfg = lambda: tiny_train(act=act, steps=12, seed=5, kernels="eager")  # noqa: E731
    plain = train(cfg(), data=bundle, progress=False)
    with attach() as probes:  # bound to the model by the trainer's before_train
        probed = train(cfg(), data=bundle, progress=False, callbacks=(probes,))
    strip = lambda r: [(row["train_loss"], row["grad_norm"], row.get("val_loss"))  # noqa: E731
                       for row in r.history]
    assert strip(probed) == strip(plain)
    # The hooks really ran on every step: forward statistics and branch gradients.
    assert [r["step"] for r in probes.acts.records] == list(range(12))
    assert all(r["h.1"]["branch"] > 0 for r in probes.grad.records)
    assert 0 < probes.path.value() < 1


def test_probes_refuse_a_gated_ffn_whose_kernels_skip_the_hooked_modules():
    model, _, _ = tiny_gpt(act="swiglu", kernels="fused")
    with pytest.raises(ValueError, match="kernels='eager'"):
        attach(model)
    gpt_layers(tiny_gpt(act="gelu", kernels="fused")[0])  # a plain FFN has no fused path


@pytest.mark.parametrize("act", ["glu", "swiglu"])
def test_eager_and_fused_kernels_train_to_the_same_losses(bundle, act):
    # The fused kernels run eager autograd's aten ops in the same order: on CPU the loss
    # histories agree bit for bit, so probing with eager kernels measures the same training.
    runs = {k: train(tiny_train(act=act, steps=12, seed=5, kernels=k), data=bundle, progress=False)
            for k in ("eager", "fused")}
    strip = lambda r: [(row["train_loss"], row["grad_norm"], row.get("val_loss"))  # noqa: E731
                       for row in r.history]
    assert strip(runs["eager"]) == strip(runs["fused"])

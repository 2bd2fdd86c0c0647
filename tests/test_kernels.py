"""The gated FFN kernels: same numbers as eager autograd, less memory kept, chosen by the config."""
import warnings

import pytest
import torch
from torch import nn

from actlab.activations import get, names
from actlab.activations import kernels as fused
from actlab.config import ModelConfig
from actlab.nn import GPT

GATED = names(gated=True)
D, H = 12, 32  # block width and hidden width: tiny, and d != h so the counts tell them apart


def _x(*shape, scale=1.0, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).to(dtype)


def _block(name, seed=0):
    torch.manual_seed(seed)
    act = get(name)
    width = 2 * H if name in GATED else H
    return nn.Linear(D, width), act, nn.Linear(H, D)


def _forward(block, x, mode):
    """c_proj(act(c_fc(x))) with `mode` for both the activation and its fusion with c_proj."""
    fc, act, proj = block
    act.mode = mode
    return fused.gated_linear(act, fc(x), proj, mode)


def _run_block(block, x, mode):
    """Output and the gradients of x and of every weight and bias, for a fixed grad_out."""
    fc, _, proj = block
    x = x.detach().clone().requires_grad_()
    out = _forward(block, x, mode)
    out.backward(_x(*out.shape, seed=1, dtype=out.dtype))
    params = [*fc.parameters(), *proj.parameters()]
    grads = [x.grad] + [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    return [out.detach(), *grads]


def _saved_bytes(fn, params) -> int:
    """Bytes autograd keeps for backward: saved tensors, each storage once, parameters excluded."""
    skip = {p.untyped_storage().data_ptr() for p in params}
    kept: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            kept[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(kept.values())


@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("scale", [1.0, 400.0])
def test_gated_act_matches_eager_and_stays_finite(name, scale):
    # scale 400: every gate saturates (sigmoid to exactly 0 or 1) and nothing overflows.
    x = _x(3, 5, 2 * H, scale=scale)
    grad_out = _x(3, 5, H, seed=1)
    results = {}
    for mode in ("eager", "fused"):
        act = get(name)
        act.mode = mode
        leaf = x.clone().requires_grad_()
        out = act(leaf)
        out.backward(grad_out)
        results[mode] = (out.detach(), leaf.grad)
    for fused_t, eager_t in zip(results["fused"], results["eager"]):
        assert torch.isfinite(fused_t).all()
        torch.testing.assert_close(fused_t, eager_t)


@pytest.mark.parametrize("name", GATED)
def test_gated_linear_matches_eager(name):
    block = _block(name)
    x = _x(4, 3, D)
    for fused_t, eager_t in zip(_run_block(block, x, "fused"), _run_block(block, x, "eager")):
        torch.testing.assert_close(fused_t, eager_t)


@pytest.mark.parametrize("gate", sorted(fused.GATES))
def test_gradcheck_float64(gate):
    x = _x(2, 3, 8, dtype=torch.float64).requires_grad_()
    w = _x(5, 4, seed=2, dtype=torch.float64).requires_grad_()
    b = _x(5, seed=3, dtype=torch.float64).requires_grad_()
    linear = fused.GATED_LINEAR["cpu"]
    for fn, inputs in (
        (lambda t: fused.GatedAct.apply(t, gate, "fused"), (x,)),
        (lambda *t: linear.apply(*t, gate, "fused"), (x, w, b)),
    ):
        assert torch.autograd.gradcheck(fn, inputs)
        assert torch.autograd.gradgradcheck(fn, inputs)  # backward(create_graph=True) works


@pytest.mark.parametrize("gate", sorted(fused.GATES))
def test_traced_math_equals_the_kernels(gate):
    # The functional math is what torch.compile traces and create_graph=True differentiates;
    # the in-place kernels are the default path. Both must give the same numbers.
    x, grad = _x(3, 5, 2 * H, scale=4.0), _x(3, 5, H, seed=1)
    torch.testing.assert_close(fused._forward_math(x, gate), fused._forward_kernels(x, gate))
    torch.testing.assert_close(
        fused._backward_math(x, grad, gate), fused._backward_kernels(x, grad, gate)
    )


@pytest.mark.parametrize("gate", sorted(fused.GATES))
def test_row_blocks_cover_every_row_once(gate, monkeypatch):
    # Blocks of 2 rows of a (3, 5) batch: 15 rows in 8 blocks, the last one short; the results
    # must equal the math on the whole tensor, and a tensor below two blocks stays in one piece.
    x, grad = _x(3, 5, 2 * H, scale=4.0), _x(3, 5, H, seed=1)
    monkeypatch.setattr(fused, "BLOCK_BYTES", 2 * 2 * H * x.element_size())
    monkeypatch.setattr(fused, "BIG_BYTES", 0)
    assert len(fused._row_blocks(x)) == 8 and len(fused._row_blocks(x[:1, :3])) == 1
    torch.testing.assert_close(fused._forward_math(x, gate), fused._forward_kernels(x, gate))
    torch.testing.assert_close(
        fused._backward_math(x, grad, gate), fused._backward_kernels(x, grad, gate)
    )


@pytest.mark.parametrize("name", GATED)
def test_fused_ffn_keeps_at_most_0_7_of_eager(name):
    # Per token, eager keeps the block input (d), c_fc's output (2h, through the gate and up
    # views), f(gate) (h) and the product (h): d + 4h; the bilinear gate has no f(gate): d + 3h.
    # The fused act + c_proj keeps c_fc's output only: d + 2h.
    block = _block(name)
    x = _x(4, 3, D).requires_grad_()
    params = [p for layer in block for p in layer.parameters()]
    kept = {
        mode: _saved_bytes(lambda m=mode: _forward(block, x, m), params)
        for mode in ("eager", "fused")
    }
    per_token = 4 * 4 * 3  # float32 bytes times tokens
    eager_width = D + (3 if name == "bilinear" else 4) * H
    assert kept["eager"] == eager_width * per_token
    assert kept["fused"] == (D + 2 * H) * per_token
    if name != "bilinear":  # 76 / 140 = 0.54; bilinear: 76 / 108 = 0.70, just above 0.7
        assert kept["fused"] <= 0.7 * kept["eager"]


def test_model_config_picks_the_kernels_once_and_they_agree():
    # ModelConfig.kernels decides at build time; eager keeps d + 4h per token, fused d + 2h,
    # and both give the same loss and gradients.
    cfg = dict(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=D, act="swiglu")
    tokens = torch.randint(0, 32, (2, 9), generator=torch.Generator().manual_seed(0))
    results, kept = {}, {}
    for kernels in ("eager", "fused"):
        torch.manual_seed(0)
        model = GPT(ModelConfig(**cfg, kernels=kernels))
        mlp = model.transformer.h[0].mlp
        assert mlp.kernels == kernels and mlp.act.mode == kernels
        h = _x(2, 8, D).requires_grad_()
        kept[kernels] = _saved_bytes(lambda m=mlp, h=h: m(h), list(mlp.parameters()))
        loss = model(tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())[1]
        loss.backward()
        results[kernels] = [loss.detach()] + [p.grad for p in model.parameters()]
    hidden = mlp.c_proj.in_features
    assert kept["eager"] == (D + 4 * hidden) * 4 * 16 and kept["fused"] == (D + 2 * hidden) * 4 * 16
    for got, want in zip(results["fused"], results["eager"]):
        torch.testing.assert_close(got, want)
    with pytest.raises(Exception, match="kernels must be one of"):
        ModelConfig(kernels="1")


def test_failed_compile_warns_once_and_falls_back(monkeypatch):
    def broken():
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fused, "_compiled", broken)
    monkeypatch.setattr(fused, "_compile_failure", [])
    block = _block("geglu")
    x = _x(4, 3, D)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler") as record:
        compiled = _run_block(block, x, "compile")
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call warns no more
        _run_block(block, x, "compile")
    for got, want in zip(compiled, _run_block(block, x, "eager")):
        torch.testing.assert_close(got, want)


@pytest.mark.slow
def test_compiled_kernels_match_eager():
    # torch.compile takes seconds (cold cache: tens of seconds), hence one tiny case.
    block = _block("swiglu")
    x = _x(4, 3, D)
    for got, want in zip(_run_block(block, x, "compile"), _run_block(block, x, "eager")):
        torch.testing.assert_close(got, want)
    assert not fused._compile_failure


def test_hooks_do_not_change_the_kernels():
    # The mode alone picks the path: a hook on the gate function fires under eager kernels and
    # is skipped by the fused ones, and the numbers are the same either way.
    fc, act, proj = _block("swiglu")
    x = _x(4, 3, D)
    calls = []
    handle = act.gate_fn.register_forward_hook(lambda m, a, o: calls.append(o))
    try:
        out = {mode: _forward((fc, act, proj), x, mode) for mode in ("eager", "fused")}
    finally:
        handle.remove()
    assert len(calls) == 1  # the eager call only
    torch.testing.assert_close(out["fused"], out["eager"])


def test_autocast_bfloat16_matches_eager():
    block = _block("swiglu")
    x = _x(4, 3, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = _run_block(block, x, "fused"), _run_block(block, x, "eager")
    assert got[0].dtype == torch.bfloat16
    assert [t.dtype for t in got[1:]] == [torch.float32] * 5  # x, c_fc W, b, c_proj W, b
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=2e-2, atol=2e-2)


def test_same_seed_gives_bitwise_equal_gradients():
    runs = [_run_block(_block("glu", seed=7), _x(4, 3, D, seed=7), "fused") for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_auto_compiles_only_big_tensors(monkeypatch):
    # 'auto' (the default) takes the compiled kernels from BIG_BYTES of input up, the aten ones
    # below; the compiled pair is stood in for by the plain math, counted.
    calls = []

    def fake_compiled():
        def fwd(x, gate):
            calls.append(x.numel())
            return fused._forward_math(x, gate)

        def bwd(x, grad, gate):
            calls.append(x.numel())
            return fused._backward_math(x, grad, gate)
        return fwd, bwd

    monkeypatch.setattr(fused, "_compiled", fake_compiled)
    monkeypatch.setattr(fused, "_compile_failure", [])
    assert get("swiglu").mode == "auto"  # the default of a GatedActivation made on its own
    small, big = _x(2, 2 * H, seed=1), _x(8, 2 * H, seed=2)
    monkeypatch.setattr(fused, "BIG_BYTES", big.numel() * big.element_size())
    act = get("swiglu")
    for x in (small, big):
        x.requires_grad_()
        act(x).sum().backward()
        want = x.detach().clone().requires_grad_()
        act.mode = "eager"
        act(want).sum().backward()
        act.mode = "auto"
        torch.testing.assert_close(x.grad, want.grad)
    assert calls == [big.numel(), big.numel()]  # forward and backward of the big one only

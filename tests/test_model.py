"""Model checks that can fail: init loss, overfitting, parameter matching, HF GPT-2 parity."""

import math

import pytest
import torch

from actlab.nn.gpt import GPT, GatedMLP, MLP

from conftest import tiny_model


@pytest.mark.parametrize("act", ["gelu", "sigmoid", "swiglu", "relu2"])
def test_loss_at_init_is_log_vocab(act):
    torch.manual_seed(0)
    cfg = tiny_model(act=act, vocab_size=96, n_embd=64)
    model = GPT(cfg)
    x = torch.randint(0, cfg.vocab_size, (8, cfg.block_size))
    _, loss = model(x, torch.roll(x, -1, dims=1))
    assert abs(loss.item() - math.log(cfg.vocab_size)) < 0.1


@pytest.mark.parametrize("act", ["gelu", "swiglu"])
def test_tiny_model_overfits_one_batch(act):
    torch.manual_seed(0)
    model = GPT(tiny_model(act=act))
    x = torch.randint(0, 64, (4, 16))
    y = torch.randint(0, 64, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, loss.item()


@pytest.mark.parametrize("gated", ["glu", "bilinear", "reglu", "geglu", "swiglu"])
@pytest.mark.parametrize("n_embd", [32, 128, 384])
def test_gated_mlp_is_parameter_matched(gated, n_embd):
    plain = MLP(tiny_model(act="gelu", n_embd=n_embd))
    glu = GatedMLP(tiny_model(act=gated, n_embd=n_embd))
    n_plain = sum(p.numel() for p in plain.parameters())
    n_glu = sum(p.numel() for p in glu.parameters())
    assert abs(n_glu - n_plain) / n_plain < 0.01


def test_gated_activation_builds_gated_mlp():
    model = GPT(tiny_model(act="swiglu"))
    assert isinstance(model.transformer.h[0].mlp, GatedMLP)
    assert isinstance(GPT(tiny_model(act="gelu")).transformer.h[0].mlp, MLP)


def test_activation_modules_are_distinct_per_layer():
    model = GPT(tiny_model(act="gelu", n_layer=3))
    acts = [b.mlp.act for b in model.transformer.h]
    assert len({id(a) for a in acts}) == 3


def test_no_residual_changes_the_function_and_still_trains():
    torch.manual_seed(0)
    with_res = GPT(tiny_model())
    torch.manual_seed(0)
    no_res = GPT(tiny_model(residual=False))
    x = torch.randint(0, 64, (2, 16))
    assert not torch.allclose(with_res(x)[0], no_res(x)[0])
    _, loss = no_res(x, x)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in no_res.parameters())


def test_rmsnorm_variant_has_no_norm_bias():
    model = GPT(tiny_model(norm="rmsnorm"))
    assert isinstance(model.transformer.ln_f, torch.nn.RMSNorm)
    x = torch.randint(0, 64, (2, 16))
    assert torch.isfinite(model(x)[0]).all()


def test_tied_embeddings():
    model = GPT(tiny_model())
    assert model.lm_head.weight is model.transformer.wte.weight


def test_sequence_longer_than_context_is_refused():
    model = GPT(tiny_model())
    with pytest.raises(ValueError):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_logits_match_huggingface_gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_cfg = transformers.GPT2Config(
        vocab_size=80, n_positions=24, n_embd=48, n_layer=3, n_head=4,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    ours = GPT(tiny_model(vocab_size=80, block_size=24, n_embd=48, n_layer=3, n_head=4,
                          act="gelu_tanh", bias=True, norm="layernorm")).eval()
    # HF's Conv1D stores weights as (in, out); nn.Linear as (out, in).
    transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    hf_state = hf.state_dict()
    with torch.no_grad():
        for name, p in ours.named_parameters():
            src = hf_state[name]
            p.copy_(src.t() if name.endswith(transposed) else src)
    x = torch.randint(0, 80, (2, 24))
    expected = hf(x).logits
    got, _ = ours(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

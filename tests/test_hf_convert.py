"""actlab GPT <-> Hugging Face GPT2LMHeadModel: same logits both ways, refusals in one line."""
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from actlab.config import ModelConfig  # noqa: E402
from actlab.errors import ActlabError  # noqa: E402
from actlab.hf import (  # noqa: E402
    EXPORT_FILE, export_model, from_hf_gpt2, hf_gpt2_config, hf_mapping, to_hf_gpt2,
)
from actlab.nn.gpt import GPT  # noqa: E402

TOL = 1e-4  # max |logit difference|
SIZE = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)


def actlab_model(**fields) -> GPT:
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SIZE, **fields)).eval()
    with torch.no_grad():  # biases and norms away from their init, so a misplaced one shows
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def tokens(n: int = 3, t: int = 16) -> torch.Tensor:
    return torch.randint(0, SIZE["vocab_size"], (n, t), generator=torch.Generator().manual_seed(1))


def max_diff(actlab: GPT, hf) -> float:
    idx = tokens()
    with torch.no_grad():
        return (actlab(idx)[0] - hf(idx).logits).abs().max().item()


@pytest.mark.parametrize("act,bias,hf_name", [
    ("gelu", True, "gelu"), ("gelu_tanh", True, "gelu_new"), ("relu", True, "relu"),
    ("gelu", False, "gelu"), ("silu", False, "silu"), ("prelu", True, "prelu"),
])
def test_to_hf_gives_the_same_logits(act, bias, hf_name):
    model = actlab_model(act=act, bias=bias)
    hf = to_hf_gpt2(model)
    assert hf.config.activation_function == hf_name
    assert hf.config.n_inner == 128 and hf.config.n_positions == 16
    assert max_diff(model, hf) < TOL
    # the weights are GPT-2's Conv1D layout: (in, out)
    fc = hf.transformer.h[0].mlp.c_fc
    assert fc.weight.shape == (32, 128)
    torch.testing.assert_close(fc.weight, model.transformer.h[0].mlp.c_fc.weight.t())
    if not bias:
        assert torch.count_nonzero(fc.bias) == 0 and torch.count_nonzero(hf.transformer.ln_f.bias) == 0


def test_the_comparison_can_fail():
    model = actlab_model(act="gelu")
    hf = to_hf_gpt2(model)
    hf.config.activation_function = "gelu_new"  # not the function the model was trained with
    hf.transformer.h[0].mlp.act = transformers.activations.ACT2FN["gelu_new"]
    assert max_diff(model, hf) > 1e-6
    with torch.no_grad():
        hf.transformer.h[1].mlp.c_proj.weight.mul_(-1)
    assert max_diff(model, hf) > 1e-3


def test_from_hf_of_a_random_gpt2_gives_the_same_logits():
    torch.manual_seed(2)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16,
                                     activation_function="gelu_new", n_inner=48)
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model = from_hf_gpt2(hf)
    assert model.config.act == "gelu_tanh" and model.config.mlp_ratio == 1.5
    assert max_diff(model, hf) < TOL
    # a state dict and its config as a dict work the same; so do GPT2Model's unprefixed names
    again = from_hf_gpt2(hf.state_dict(), config=config.to_dict())
    bare = from_hf_gpt2(hf.transformer.state_dict(), config=config)
    idx = tokens()
    with torch.no_grad():
        assert torch.equal(again(idx)[0], model(idx)[0]) and torch.equal(bare(idx)[0], model(idx)[0])


def test_export_then_from_pretrained_round_trip(tmp_path):
    model = actlab_model(act="gelu_tanh", bias=False)
    out = export_model(model, tmp_path / "hf", source={"run": "here"})
    assert {"config.json", "model.safetensors", EXPORT_FILE} <= {p.name for p in out.iterdir()}
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    assert hf.config.activation_function == "gelu_new"
    assert max_diff(model, hf) < TOL
    record = json.loads((out / EXPORT_FILE).read_text(), parse_constant=pytest.fail)
    assert record["schema_version"] == 1 and record["source"] == {"run": "here"}
    assert record["model_config"]["act"] == "gelu_tanh" and record["tokenizer"] is None
    back = from_hf_gpt2(transformers.GPT2LMHeadModel.from_pretrained(out))
    idx = tokens()
    with torch.no_grad():
        torch.testing.assert_close(back(idx)[0], model(idx)[0], atol=TOL, rtol=0)


def test_export_refuses_a_folder_it_did_not_write(tmp_path):
    model = actlab_model(act="relu")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ActlabError, match="not empty and is not an actlab export"):
        export_model(model, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    out = export_model(model, tmp_path / "hf")
    with pytest.raises(ActlabError, match="--overwrite"):
        export_model(model, out)
    export_model(actlab_model(act="gelu"), out, overwrite=True)
    assert json.loads((out / "config.json").read_text())["activation_function"] == "gelu"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "mine"]  # no leftovers


@pytest.mark.parametrize("fields,message", [
    ({"norm": "rmsnorm"}, r"norm 'rmsnorm' cannot be exported.*LayerNorm.*rotary"),
    ({"act": "swiglu"}, r"'swiglu' is gated, and GPT-2's MLP has no gate.*rotary positions"),
    ({"ffn": "moe"}, r"ffn 'moe' cannot be exported.*mixture of experts"),
    ({"attention": "sigmoid"}, r"attention 'sigmoid' cannot be exported"),
    ({"attention": "softmax_gated"}, r"attention 'softmax_gated' cannot be exported"),
    ({"head": "sigmoid"}, r"head 'sigmoid' cannot be exported"),
    ({"residual": False}, r"residual False cannot be exported.*residual connections"),
    ({"act": "elu"}, r"'elu' has no equivalent in transformers' ACT2FN"),
    ({"act": "x * tanh(x)"}, r"'x \* tanh\(x\)' has no equivalent"),
])
def test_refusals_say_why(fields, message):
    cfg = ModelConfig(**SIZE, **fields)
    for call in (hf_mapping, hf_gpt2_config):
        with pytest.raises(ActlabError, match=message) as info:
            call(cfg)
        assert "\n" not in str(info.value)


def test_mapping_line():
    line = hf_mapping(ModelConfig(**SIZE, act="gelu_tanh", bias=False, mlp_ratio=2.0))
    assert "activation_function='gelu_new'" in line and "n_inner=64" in line
    assert "bias=False as zero biases" in line


@pytest.mark.parametrize("change,message", [
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"activation_function": "xielu"}, "xielu"),
    ({"tie_word_embeddings": False}, "untied"),
])
def test_from_hf_refusals(change, message):
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=20, n_positions=8, **change)
    state = {}  # refused from the config alone, before any weight is read
    with pytest.raises(ActlabError, match=message):
        from_hf_gpt2(state, config=config)
    with pytest.raises(ActlabError, match="needs its config"):
        from_hf_gpt2(state)


def test_a_learned_prelu_slope_is_refused_and_the_initial_one_copies(tmp_path):
    model = actlab_model(act="prelu")
    out = export_model(model, tmp_path / "hf")
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    assert hf.transformer.h[0].mlp.act.weight.item() == 0.25 and max_diff(model, hf) < TOL
    assert max_diff(from_hf_gpt2(hf), hf) < TOL
    with torch.no_grad():
        hf.transformer.h[1].mlp.act.weight.fill_(0.3)
    with pytest.raises(ActlabError, match="learned PReLU slope"):
        from_hf_gpt2(hf)

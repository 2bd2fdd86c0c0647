"""swap_activation on GPT-2, Llama and BERT: each MLP's output equals the hand computation."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

transformers = pytest.importorskip("transformers")

from actlab.errors import ActlabError  # noqa: E402
from actlab.hf import swap_activation  # noqa: E402

IDS = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))


def relu2(x):
    return F.relu(x) ** 2


def gpt2():
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16)).eval()


def llama():
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=50, max_position_embeddings=16)).eval()


def bert():
    torch.manual_seed(0)
    return transformers.BertModel(transformers.BertConfig(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
        vocab_size=50, max_position_embeddings=16)).eval()


def io_of(modules, run):
    """(input, output) of each module during run()."""
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: seen.__setitem__(k, (i[0], o)))
             for k, m in enumerate(modules)]
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    return [seen[k] for k in range(len(modules))]


def test_gpt2_mlp_computes_the_new_function():
    model = gpt2()
    before = model(IDS).logits.detach()
    replaced = swap_activation(model, "relu2")
    assert replaced == ["transformer.h.0.mlp.act", "transformer.h.1.mlp.act"]
    assert model.config.activation_function == "relu2"
    mlps = [b.mlp for b in model.transformer.h]
    for mlp, (x, out) in zip(mlps, io_of(mlps, lambda: model(IDS))):
        torch.testing.assert_close(out, mlp.c_proj(relu2(mlp.c_fc(x))))
    assert (model(IDS).logits - before).abs().max() > 1e-4  # it did change the model


def test_gpt2_swap_survives_save_and_load(tmp_path):
    model = gpt2()
    swap_activation(model, "gelu_tanh")
    model.save_pretrained(tmp_path)
    again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert again.config.activation_function == "gelu_new"
    with torch.no_grad():
        torch.testing.assert_close(again(IDS).logits, model(IDS).logits, atol=1e-6, rtol=0)


def test_gated_name_on_gpt2_is_refused_and_changes_nothing():
    model = gpt2()
    with pytest.raises(ActlabError, match=r"'swiglu' is gated.*GPT2MLP.*gate function 'silu'") as info:
        swap_activation(model, "swiglu")
    assert "\n" not in str(info.value)
    assert model.config.activation_function == "gelu_new"
    assert type(model.transformer.h[0].mlp.act).__name__ == "NewGELUActivation"


@pytest.mark.parametrize("name,gate", [("geglu", lambda a: F.gelu(a)), ("reglu", F.relu),
                                       ("relu2", relu2)])
def test_llama_gated_mlp_takes_the_gate_function(name, gate):
    model = llama()
    replaced = swap_activation(model, name)
    assert replaced == [f"model.layers.{i}.mlp.act_fn" for i in range(2)]
    mlps = [layer.mlp for layer in model.model.layers]
    for mlp, (x, out) in zip(mlps, io_of(mlps, lambda: model(IDS))):
        expected = mlp.down_proj(gate(mlp.gate_proj(x)) * mlp.up_proj(x))
        torch.testing.assert_close(out, expected)
    assert model.config.hidden_act == {"geglu": "gelu", "reglu": "relu", "relu2": "relu2"}[name]


def test_bert_intermediate_and_not_its_pooler():
    model = bert()
    replaced = swap_activation(model, "silu")
    assert replaced == [f"encoder.layer.{i}.intermediate.intermediate_act_fn" for i in range(2)]
    assert isinstance(model.pooler.activation, nn.Tanh)  # not an MLP's activation
    inter = [layer.intermediate for layer in model.encoder.layer]
    for mod, (x, out) in zip(inter, io_of(inter, lambda: model(IDS))):
        torch.testing.assert_close(out, F.silu(mod.dense(x)))
    assert model.config.hidden_act == "silu"
    with pytest.raises(ActlabError, match="is gated"):
        swap_activation(model, "geglu")


def test_generic_module_and_a_model_without_an_mlp():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.activation_fn = nn.Linear(4, 8), nn.Linear(8, 4), nn.GELU()

        def forward(self, x):
            return self.fc2(self.activation_fn(self.fc1(x)))

    block = Block()
    assert swap_activation(block, "tanh") == ["activation_fn"]
    x = torch.randn(3, 4)
    torch.testing.assert_close(block(x), block.fc2(torch.tanh(block.fc1(x))))
    with pytest.raises(ActlabError, match="found no MLP activation in Sequential"):
        swap_activation(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), "relu")
    with pytest.raises(ActlabError, match="unknown activation"):
        swap_activation(block, "no_such_act")


def test_a_name_without_act2fn_keeps_the_config_and_says_so():
    model = gpt2()
    swap_activation(model, "elu")
    assert model.config.activation_function == "gelu_new" and model.config.actlab_activation == "elu"


def test_t5_gated_feed_forward_is_gated():
    torch.manual_seed(0)
    model = transformers.T5EncoderModel(transformers.T5Config(
        d_model=16, d_ff=24, num_layers=1, num_heads=2, d_kv=8, vocab_size=50,
        feed_forward_proj="gated-gelu")).eval()
    assert swap_activation(model, "swiglu") == ["encoder.block.0.layer.1.DenseReluDense.act"]
    ff = model.encoder.block[0].layer[1].DenseReluDense
    [(x, out)] = io_of([ff], lambda: model(input_ids=IDS))
    torch.testing.assert_close(out, ff.wo(F.silu(ff.wi_0(x)) * ff.wi_1(x)))


def test_actlab_models_plain_swaps_and_gated_refusal():
    from actlab.config import ModelConfig
    from actlab.nn.gpt import GPT

    size = dict(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)
    plain = GPT(ModelConfig(**size, act="gelu")).eval()
    assert swap_activation(plain, "relu") == ["transformer.h.0.mlp.act"]
    mlp = plain.transformer.h[0].mlp
    x = torch.randn(2, 16)
    torch.testing.assert_close(mlp(x), mlp.c_proj(F.relu(mlp.c_fc(x))))
    with pytest.raises(ActlabError, match="actlab gated MLP.*ModelConfig.act"):
        swap_activation(GPT(ModelConfig(**size, act="swiglu")), "geglu")

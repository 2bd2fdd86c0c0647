"""Published reference results shown beside ours. For comparison only, never for tuning."""

# Shazeer 2020, "GLU Variants Improve Transformer", Table 1: log-perplexity on the C4
# held-out set after 65,536 steps of T5-base-sized pre-training (std across runs ~0.005).
SHAZEER_2020_TABLE1 = {
    "relu": 1.997,
    "gelu": 1.983,
    "silu": 1.994,  # "Swish" (beta = 1)
    "glu": 1.982,
    "bilinear": 1.960,
    "geglu": 1.942,
    "swiglu": 1.944,
    "reglu": 1.953,
}
SHAZEER_2020_SOURCE = "Shazeer 2020, GLU Variants Improve Transformer, arXiv:2002.05202, Table 1 (65k steps)"

# What well-known models use (the full table with sources ships as data/zoo.toml).
MODEL_FACTS = [
    ("Original Transformer", "ReLU", "Vaswani et al. 2017, section 3.3"),
    ("GPT-1", "GELU", "Radford et al. 2018, section 4.1"),
    ("GPT-2 / GPT-3", "GELU (tanh approximation)", "HF gpt2 config activation_function=gelu_new; Brown et al. 2020, section 2.1"),
    ("LLaMA / Mistral / Qwen", "SwiGLU", "Touvron et al. 2023, section 2.2; HF configs hidden_act=silu"),
    ("Gemma", "GeGLU (tanh GELU)", "Gemma Team 2024, section 2; HF config hidden_activation=gelu_pytorch_tanh"),
    ("OPT", "ReLU", "Zhang et al. 2022; HF config activation_function=relu"),
    ("Nemotron-4 / modded-nanogpt", "ReLU²", "Parmar et al. 2024 (Nemotron-4 15B); modded-nanogpt records"),
    ("DeepSeek-V3", "sigmoid expert-routing scores", "DeepSeek-AI 2024, DeepSeek-V3 technical report, section 2.1.2"),
]

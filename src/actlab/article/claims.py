"""The article's claims, quoted exactly, with the study that tests each.

The quotes come from "Why Sigmoid Isn't Used in GPT/LLM Models" (the explainer this lab
audits). Decision rules live in the study modules beside the code that measures them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    quote: str
    study: str


CLAIMS = {
    "C1": Claim(
        "C1", "Vanishing gradients",
        r"Its derivative is \\(\sigma'(x) = \sigma(x)(1 - \sigma(x))\\), which approaches 0 in these "
        "regions. During backpropagation, this causes gradients to \"vanish\" (become tiny), stalling "
        "learning in deep layers.",
        "vanishing",
    ),
    "C2": Claim(
        "C2", "Non-zero-centred outputs",
        "Sigmoid always outputs positive values (0 to 1), which biases weight updates during "
        "optimization. This leads to \"zig-zag\" gradient descent paths, slowing convergence compared "
        "to zero-centered functions like tanh or GELU.",
        "centering",
    ),
    "C3": Claim(
        "C3", "Empirical underperformance",
        "Extensive experiments show sigmoid lags behind modern activations in NLP tasks.",
        "convergence",
    ),
    "C4": Claim(
        "C4", "Output layer needs softmax",
        "Sigmoid would work for binary decisions but fails for multi-class vocabularies (e.g., 50k+ "
        "tokens), as outputs don't sum to 1, leading to unstable probabilities.",
        "output-head",
    ),
    "C5": Claim(
        "C5", "Sigmoid survives only in gates",
        "Rarely in hidden layers of LLMs, but occasionally in specialized spots like binary gates or "
        "older RNNs/LSTMs (pre-transformer era).",
        "gates",
    ),
    "C6": Claim(
        "C6", "Does not scale",
        "In summary, sigmoid's elegance from the 1980s doesn't scale to the depth and scale of LLMs.",
        "scaling",
    ),
    "C7": Claim(
        "C7", "Faster, more reliable training",
        "ReLU/GELU/Swish provide faster, more reliable training with fewer pitfalls.",
        "stability",
    ),
    "F": Claim(
        "F", "Model facts",
        "Transformers in LLMs are extremely deep (e.g., GPT-4 has 100+ layers), so this hampers "
        "training efficiency. [...] Early transformers (e.g., original GPT) used ReLU for speed and "
        "simplicity. Later models like GPT-2/3 shifted to GELU for its smooth, probabilistic "
        "behavior, which empirically boosts accuracy and convergence without sigmoid's drawbacks. "
        r"[...] Variants like SiLU (Sigmoid Linear Unit, \\(f(x) = x \cdot \sigma(x)\\)) appear in "
        r"some LLMs (e.g., InstructGPT), but this isn't plain sigmoid—it's multiplied by \\(x\\) to "
        "fix zero-centering and reduce saturation.",
        "facts",
    ),
}

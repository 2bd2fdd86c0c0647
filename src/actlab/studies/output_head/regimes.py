"""The regime rule (analysis.regime) in study C4, where a setting is one vocabulary size.

Each size has its own tokenizer, so its own n-gram baselines; they come in nats per token and
the study's losses are nats per byte, so the baselines are converted with the factor the study
uses for its own losses. The reference of a size is its softmax-head run (GELU FFN, softmax
attention: the defaults every run of C4 keeps). Pure functions on plain numbers, so the tests
call them on hand-built values.
"""
from __future__ import annotations

from actlab.analysis import regime
from actlab.analysis.numbers import is_finite


def per_byte(baselines: dict | None, bytes_per_token: float) -> dict | None:
    """Per-token n-gram baselines in nats per byte: divided by the bytes per token of the
    evaluated tokens, the factor by which runs.measure turns the per-token loss into the
    per-byte one (sum nll / sum bytes = mean nll / mean bytes). None without baselines or
    without that factor."""
    if not baselines or not is_finite(bytes_per_token) or bytes_per_token <= 0:
        return None
    return {o: baselines[o] / bytes_per_token for o in regime.ORDERS}


def size_regimes(losses: list[dict[str, list]], per_vocab: list[dict], baselines: dict,
                 hint: str = regime.HINT) -> dict[str, dict]:
    """Per vocabulary label: its baselines per byte, the regime of its softmax-head runs and
    each head's median loss per byte against the baselines.

    losses: per size (in per_vocab's order), {head: final nats per byte per seed, NaN for a
    diverged or failed run}; per_vocab: the study's summaries (label, vocab_size,
    bytes_per_token); baselines: label -> DataBundle.baselines() of that size's data."""
    out = {}
    for heads, v in zip(losses, per_vocab):
        bpt, base = v["bytes_per_token"], baselines.get(v["label"])
        bars = per_byte(base, bpt)
        reg = regime.regime(heads.get("softmax"), bars, hint)
        if base and bars is None:
            reg["reason"] = "no run measured the bytes per token of the validation tokens"
        if reg["reason"]:
            reg["reason"] = f"V={v['vocab_size']} ({v['label']}), per byte: {reg['reason']}"
        out[v["label"]] = {"vocab_size": v["vocab_size"], "bytes_per_token": bpt,
                           "baselines_per_byte": bars, "regime": reg,
                           "vs_baselines": regime.versus_baselines(heads, bars)}
    return out


def regime_notes(regs: dict[str, dict]) -> list[str]:
    """Caveats from the regime rule: the sizes left out, and per size in regime each head that
    stays above a baseline (analysis.regime.findings, in nats per byte)."""
    out = []
    for label, r in regs.items():
        reg = r["regime"]
        if not reg["in_regime"]:
            out.append(f"out of regime, left out of the decision: {reg['reason']}")
        for note in regime.findings(r["vs_baselines"], reg):
            out.append(f"V={r['vocab_size']} ({label}), per byte: {note}")
    return out

"""Claim F: the article's facts about named models, judged against the shipped model zoo.

No training runs here: every number comes from `actlab/data/zoo.toml`, where each row carries
its public source (a paper section or a model repository's config key). Each fact gets its own
verdict by actlab.article.zoo.FACT_RULE; the overall verdict combines them by RULE below.
"""

from __future__ import annotations

from pathlib import Path

from actlab.article import zoo
from actlab.article.claims import CLAIMS
from actlab.article.verdicts import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from actlab.studies.base import Verdict, check_preset, register_study

STUDY = "facts"

# The overall rule; its reasoning is in `decide`.
RULE = (
    zoo.FACT_RULE + " Overall: NOT SUPPORTED if any fact is contradicted by a "
    "public source; SUPPORTED if every fact is supported; SUPPORTED WITH CAVEAT if none is "
    "contradicted, some are supported and the rest have no public source; INCONCLUSIVE if no "
    "fact could be checked."
)


def decide(verdicts: list[str]) -> str:
    """The overall rule (RULE) on the per-fact verdicts.

    Why: the claim is that these facts are correct. One fact contradicted by a public source
    makes the set of facts wrong, whatever the others say; a fact nobody can check (a withheld
    architecture) neither confirms nor refutes, so it only weakens a verdict to a caveat.
    """
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if SUPPORTED in verdicts:
        return CAVEAT
    return INCONCLUSIVE


@register_study(STUDY, "F")
def run(preset: str, out_dir: str | Path, progress: bool = True, *, data: str | None = None,
        tokenizer: str = "char") -> Verdict:
    """The article's model facts (original GPT, GPT-2/3, InstructGPT, GPT-4) vs public sources.
    Reads no corpus: `data` and `tokenizer` are accepted like every study's and unused."""
    check_preset(preset)  # every preset reads the same table
    facts = zoo.fact_verdicts()
    verdict = decide([f["verdict"] for f in facts])
    evidence = {
        "facts": [{"id": f["id"], "claim": f["claim"], "verdict": f["verdict"], "reason": f["reason"],
                   "models": [{k: m[k] for k in ("model", "value", "basis", "inherits", "sources", "notes")}
                              for m in f["models"]],
                   "holds_for": f["holds_for"],
                   "related": [{"name": r["name"], "ffn": r["ffn"], "sources": r["sources"]}
                               for r in f["related"]]}
                  for f in facts],
        "zoo_rows": len(zoo.load()),
    }
    summary = "; ".join(f"{f['claim']}: {f['verdict']}" for f in facts)
    caveats = [
        "InstructGPT's and GPT-3's activations are inherited: their papers state that they reuse "
        "GPT-3's / GPT-2's model, and fine-tuning does not change an activation; no public source "
        "says InstructGPT uses SiLU",
        "GPT-4: OpenAI published no architecture, so its depth cannot be checked",
        "'original GPT' is read as GPT-1 (Radford et al. 2018); the original Transformer "
        "(Vaswani et al. 2017) did use ReLU",
    ]
    return Verdict(claim="F", quote=CLAIMS["F"].quote, rule=RULE, verdict=verdict, evidence=evidence,
                   figures=[], preset=preset, study=STUDY, summary=summary, caveats=caveats)

"""Which non-linearities well-known language models use, with a public source for every row,
and the article's model facts judged against that table.

The table ships as `actlab/data/zoo.toml`; `load()` validates it so that a row without a
source, or with a value outside the allowed vocabulary, never reaches a verdict. A value with
no public source is "unknown", and a fact that rests on an unknown value is INCONCLUSIVE.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from actlab.article.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from actlab.errors import ActlabError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

UNKNOWN = "unknown"
REQUIRED = ("name", "org", "year", "ffn", "family", "gated", "attention_gate", "router", "basis", "sources")
ALLOWED = {
    "ffn": ("relu", "gelu", "gelu_tanh", "relu2", "swiglu", "geglu_tanh", UNKNOWN),
    "family": ("relu", "gelu", "silu", "relu2", UNKNOWN),
    "attention_gate": ("none", "sigmoid", UNKNOWN),
    "router": ("none", "softmax", "sigmoid", UNKNOWN),
    "basis": ("stated", "inherited", UNKNOWN),
}


def load(text: str | None = None) -> list[dict]:
    """The validated rows of zoo.toml (or of `text`, for tests), in file order."""
    if text is None:
        text = resources.files("actlab.data").joinpath("zoo.toml").read_text(encoding="utf-8")
    try:
        rows = tomllib.loads(text).get("model", [])
    except tomllib.TOMLDecodeError as err:
        raise ActlabError(f"zoo.toml: {err}") from None
    validate(rows)
    return rows


def validate(rows: list[dict]) -> None:
    """Raise ActlabError naming the row and the field for anything a verdict could trip on."""
    names = set()
    for i, row in enumerate(rows):
        where = f"zoo row {i + 1} ({row.get('name', '?')})"
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise ActlabError(f"{where}: missing {', '.join(missing)}")
        if row["name"] in names:
            raise ActlabError(f"{where}: duplicate name")
        names.add(row["name"])
        for key, options in ALLOWED.items():
            if row[key] not in options:
                raise ActlabError(f"{where}: {key} = {row[key]!r}; allowed: {', '.join(options)}")
        if row["gated"] not in (True, False, UNKNOWN):
            raise ActlabError(f"{where}: gated must be true, false or \"unknown\"")
        n = row.get("n_layer", UNKNOWN)
        if n != UNKNOWN and not (isinstance(n, int) and n > 0):
            raise ActlabError(f"{where}: n_layer must be a positive integer or \"unknown\"")
        sources = row["sources"]
        if not isinstance(sources, list) or not sources or \
                not all(isinstance(s, str) and s.strip() for s in sources):
            raise ActlabError(f"{where}: sources must be a non-empty list of non-empty strings")
        if (row["basis"] == "inherited") != ("inherits" in row):
            raise ActlabError(f"{where}: basis 'inherited' and an 'inherits' row go together")
    for row in rows:  # an inherited value must be the parent's
        if "inherits" in row:
            parent = next((r for r in rows if r["name"] == row["inherits"]), None)
            if parent is None:
                raise ActlabError(f"zoo row {row['name']}: inherits unknown row {row['inherits']!r}")
            for key in ("ffn", "family", "gated"):
                if row[key] != parent[key]:
                    raise ActlabError(f"zoo row {row['name']}: {key} differs from {parent['name']}'s")


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in rows}


# -- the article's model facts -----------------------------------------------------------------

@dataclass(frozen=True)
class Fact:
    id: str
    claim: str  # the fact in a few words
    quote: str  # the article's sentence, verbatim
    models: tuple[str, ...]  # zoo rows the fact is about
    field: str  # the zoo field it reads
    expect: str  # the value that makes it true; ">=N" for a lower bound on a number
    related: tuple[str, ...] = ()  # rows shown beside it for context


FACTS = (
    Fact("original-gpt-relu", "original GPT used ReLU",
         "Early transformers (e.g., original GPT) used ReLU for speed and simplicity.",
         ("GPT-1",), "family", "relu", related=("Transformer",)),
    Fact("gpt2-3-gelu", "GPT-2/3 use GELU",
         "Later models like GPT-2/3 shifted to GELU for its smooth, probabilistic behavior, which "
         "empirically boosts accuracy and convergence without sigmoid's drawbacks.",
         ("GPT-2", "GPT-3"), "family", "gelu"),
    Fact("instructgpt-silu", "InstructGPT uses SiLU",
         r"Variants like SiLU (Sigmoid Linear Unit, \\(f(x) = x \cdot \sigma(x)\\)) appear in some "
         r"LLMs (e.g., InstructGPT), but this isn't plain sigmoid—it's multiplied by \\(x\\) to fix "
         r"zero-centering and reduce saturation.",
         ("InstructGPT",), "family", "silu"),
    Fact("gpt4-100-layers", "GPT-4 has 100+ layers",
         "Transformers in LLMs are extremely deep (e.g., GPT-4 has 100+ layers), so this hampers "
         "training efficiency.",
         ("GPT-4",), "n_layer", ">=100"),
)

FACT_RULE = (
    "For each model a fact names: its zoo value (a public source states it, or states that the "
    "model reuses a sourced architecture) matches -> SUPPORTED, differs -> NOT SUPPORTED, is "
    "unknown (no public source) -> INCONCLUSIVE. A fact about several models is NOT SUPPORTED if "
    "any is, SUPPORTED if all are, INCONCLUSIVE otherwise."
)


def _holds(value, expect: str) -> bool:
    if expect.startswith(">="):
        return isinstance(value, int) and value >= int(expect[2:])
    return value == expect


def check(fact: Fact, rows: list[dict]) -> dict:
    """One fact judged against the table (FACT_RULE), with each model's value and sources."""
    table = by_name(rows)
    per_model = []
    for name in fact.models:
        row = table.get(name)
        value = row.get(fact.field, UNKNOWN) if row else UNKNOWN
        if value == UNKNOWN:
            verdict = INCONCLUSIVE
        else:
            verdict = SUPPORTED if _holds(value, fact.expect) else NOT_SUPPORTED
        per_model.append({"model": name, "value": value, "verdict": verdict,
                          "basis": row["basis"] if row else UNKNOWN,
                          "inherits": row.get("inherits") if row else None,
                          "sources": row["sources"] if row else [],
                          "notes": row.get("notes", "") if row else ""})
    verdicts = [m["verdict"] for m in per_model]
    if NOT_SUPPORTED in verdicts:
        verdict = NOT_SUPPORTED
    elif verdicts and all(v == SUPPORTED for v in verdicts):
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    # where the expected value does hold, so a wrong example is not mistaken for a wrong idea
    holds_for = [r["name"] for r in rows if r["name"] not in fact.models
                 and _holds(r.get(fact.field, UNKNOWN), fact.expect)]
    return {"id": fact.id, "claim": fact.claim, "quote": fact.quote, "verdict": verdict,
            "expect": f"{fact.field} {fact.expect}", "models": per_model,
            "related": [table[n] for n in fact.related if n in table], "holds_for": holds_for,
            "reason": _reason(fact, per_model)}


def _reason(fact: Fact, per_model: list[dict]) -> str:
    parts = []
    for m in per_model:
        how = f" (inherited from {m['inherits']})" if m["basis"] == "inherited" else ""
        shown = "no public source" if m["value"] == UNKNOWN else f"{fact.field} = {m['value']}{how}"
        parts.append(f"{m['model']}: {shown}")
    return "; ".join(parts)


def fact_verdicts(rows: list[dict] | None = None) -> list[dict]:
    """Every fact in FACTS judged on the shipped table (or on `rows`)."""
    rows = load() if rows is None else rows
    return [check(f, rows) for f in FACTS]


# -- printing ----------------------------------------------------------------------------------

def zoo_table(rows: list[dict] | None = None, width: int = 150):
    """A rich Table of the zoo for a console `width` characters wide: one line per model, its
    first source cut to what is left of the line (`actlab zoo --json` has every source in full)."""
    from rich import box
    from rich.table import Table

    rows = load() if rows is None else rows
    cells = []
    for r in rows:
        gated = {True: "yes", False: "-"}.get(r["gated"], r["gated"])
        layers = r.get("n_layer", "")
        layers = f"{layers} ({r['size']})" if layers not in ("", UNKNOWN) and r.get("size") else str(layers)
        basis = f"from {r['inherits']}" if r["basis"] == "inherited" else r["basis"]
        cells.append((r["name"], str(r["year"]), r["ffn"], gated, r["attention_gate"], r["router"],
                      layers, basis, r["sources"][0]))
    table = Table(box=box.SIMPLE_HEAD, title="activation zoo (every row from a public source)")
    titles = ("model", "year", "FFN", "gated", "attn gate", "router", "layers", "basis", "source")
    widths = [max(len(t), *(len(str(c[i])) for c in cells)) for i, t in enumerate(titles[:-1])]
    for title, w in zip(titles[:-1], widths):
        table.add_column(title, no_wrap=True, min_width=w)
    # the other columns keep their widths (plus 3 characters of padding and rule each)
    table.add_column("source", no_wrap=True, overflow="ellipsis",
                     max_width=max(20, width - sum(widths) - 3 * len(titles) - 2))
    for c in cells:
        table.add_row(*c)
    return table

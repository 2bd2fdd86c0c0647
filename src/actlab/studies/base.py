"""What every study returns and writes: a verdict object beside the numbers it used.

A study is a registered function `run(preset, out_dir, progress=True, *, data=None,
tokenizer="char") -> Verdict` (data: the user's text, None for the bundled corpus; a study
that takes no corpus may leave the two keywords out and runs on the bundled one). It stores
every run through `actlab.engine.sweep.run_grid`, computes its evidence from what was stored,
applies a decision rule written (with its reasoning) before any run, and draws its
figures only from stored data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from actlab.article.claims import CLAIMS
from actlab.config import PRESET_NAMES
from actlab.article.verdicts import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, VERDICTS
from actlab.errors import ActlabError
from actlab.files.atomic import write_json
from actlab.files.schema import versioned

__all__ = [
    "CAVEAT", "INCONCLUSIVE", "NOT_SUPPORTED", "PRESET_NAMES", "STUDIES", "SUPPORTED", "VERDICTS",
    "Study", "Verdict", "check_preset", "get_study", "register_study", "write_verdict",
]



@dataclass
class Verdict:
    claim: str  # claim id, e.g. "C1"
    quote: str  # the article's words
    rule: str  # the decision rule, in words, exactly as coded
    verdict: str  # one of VERDICTS
    evidence: dict  # the numbers the rule used (with confidence intervals)
    figures: list[str] = field(default_factory=list)  # paths relative to the study folder
    preset: str = "quick"
    seconds: float = 0.0
    study: str = ""
    summary: str = ""  # one line of evidence for the verdict table
    caveats: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def write_verdict(verdict: Verdict, out_dir: str | Path) -> Path:
    path = Path(out_dir) / "verdict.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Strict and atomic: NaN/Inf as null so every reader can parse verdict.json, and a kill
    # or a full disk leaves the previous verdict or none; schema_version: docs/outputs.md.
    return write_json(path, versioned(verdict.to_dict()))


@dataclass(frozen=True)
class Study:
    name: str
    claim: str
    run: Callable[..., Verdict]
    doc: str


STUDIES: dict[str, Study] = {}


def register_study(name: str, claim: str):
    """Decorator: register `run(preset, out_dir, progress=True) -> Verdict` under `name`."""

    def deco(fn):
        if name in STUDIES:
            raise ValueError(f"study {name!r} registered twice")
        if claim not in CLAIMS:
            raise ValueError(f"unknown claim {claim!r}")
        doc = (fn.__doc__ or "").strip()
        STUDIES[name] = Study(name, claim, fn, doc.splitlines()[0] if doc else "")
        return fn

    return deco


def get_study(name: str) -> Study:
    from actlab import studies  # noqa: F401  (importing the package registers every study)

    if name not in STUDIES:
        import difflib

        close = difflib.get_close_matches(name, STUDIES, n=3, cutoff=0.3)
        hint = f"; did you mean: {', '.join(close)}?" if close else f"; known: {', '.join(sorted(STUDIES))}"
        raise ActlabError(f"unknown study {name!r}{hint}")
    return STUDIES[name]


def check_preset(preset: str) -> str:
    if preset not in PRESET_NAMES:
        raise ActlabError(f"preset must be one of {', '.join(PRESET_NAMES)}; got {preset!r}")
    return preset

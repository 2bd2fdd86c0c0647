"""Gather what an audit folder holds into one plain dict for the templates."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

from actlab.article.claims import CLAIMS
from actlab.article.verdicts import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from actlab.errors import ActlabError
from actlab.engine.store import Store
from actlab.engine.sweep import STORE_NAME

VERDICT_CLASS = {
    SUPPORTED: "supported",
    CAVEAT: "caveat",
    NOT_SUPPORTED: "refuted",
    INCONCLUSIVE: "inconclusive",
}


def _png_data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _runs_summary(study_dir: Path, study: str) -> dict:
    """Run count, outcomes and the distinct configurations stored for one study."""
    db = study_dir / STORE_NAME
    if not db.is_file():
        return {"n": 0, "outcomes": {}, "configs": []}
    with Store(db) as store:
        runs = store.runs()
    outcomes = Counter(r["outcome"] or r["status"] for r in runs)
    configs = [{"id": r["id"], "config": r["config"], "outcome": r["outcome"]} for r in runs]
    return {"n": len(runs), "outcomes": dict(outcomes), "configs": configs}


def regimes(evidence: dict, label: str = "", depth: int = 4) -> list[dict]:
    """Every regime check a verdict's evidence holds (analysis.regime.regime's dicts), labelled
    by where it sits: "all runs" for the study's own, else its path ("settings/gpt/adamw",
    "4096" for a study that keeps one per vocabulary size under "regime")."""
    found = []
    for key, value in evidence.items():
        if not isinstance(value, dict):
            continue
        here = label if key == "regime" else f"{label}/{key}".strip("/")
        if "in_regime" in value and "reference_loss" in value:
            found.append({"label": here or "all runs", **value})
        elif depth:
            found += regimes(value, here, depth - 1)
    return found


def _study_entry(study_dir: Path, name: str, timing: dict) -> dict:
    path = study_dir / "verdict.json"
    if not path.is_file():
        return {"study": name, "missing": True, "error": timing.get("error"),
                "seconds": timing.get("seconds")}
    v = json.loads(path.read_text())
    claim = CLAIMS.get(v.get("claim", ""))
    figures = []
    for rel in v.get("figures", []):
        fig = study_dir / rel
        figures.append({"name": Path(rel).stem.replace("_", " "), "path": f"{name}/{rel}",
                        "data": _png_data_uri(fig)})
    return {
        **v,
        "study": name,
        "missing": False,
        "title": claim.title if claim else v.get("claim", name),
        "css": VERDICT_CLASS.get(v.get("verdict"), "inconclusive"),
        "figures": figures,
        "evidence_json": json.dumps(v.get("evidence", {}), indent=2, sort_keys=True),
        "regimes": regimes(v.get("evidence", {})),
        "runs": _runs_summary(study_dir, name),
        "wall_seconds": timing.get("seconds", v.get("seconds")),
    }


def collect(out_dir: str | Path) -> dict:
    """Everything the report shows, from the files under `out_dir`."""
    out = Path(out_dir)
    meta_path = out / "audit.json"
    if not meta_path.is_file():
        raise ActlabError(f"{out} holds no audit (no audit.json); run `actlab audit --out {out}` first")
    meta = json.loads(meta_path.read_text())
    studies = [
        _study_entry(out / name, name, meta.get("studies", {}).get(name, {}))
        for name in meta.get("order", [])
    ]
    return {"meta": meta, "studies": studies}

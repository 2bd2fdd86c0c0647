"""Gather what an audit folder holds into one plain dict for the templates.

The folder's files may be damaged (a truncated audit.json, a verdict.json that is not an
object, a field of the wrong type, a garbage runs.sqlite) or written by hand: each is checked
as it is read, and a problem is one ActlabError naming the file and what is wrong with it,
before the report writes anything. Names and figure paths read from them stay inside the
folder.
"""

from __future__ import annotations

import base64
import json
import math
import sqlite3
from collections import Counter
from pathlib import Path

from actlab.article.claims import CLAIMS
from actlab.article.verdicts import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from actlab.errors import ActlabError, StoreError
from actlab.engine.store import Store
from actlab.engine.sweep import STORE_NAME
from actlab.files.schema import unversioned

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
    try:
        with Store(db) as store:
            runs = store.runs()
    except sqlite3.DatabaseError as err:
        if getattr(err, "sqlite_errorname", None) not in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            raise  # the disk's failure, not the file's (the CLI says so)
        raise StoreError(f"{db} is damaged ({err}): move it away and run `actlab audit` on this "
                         "folder again to recompute its runs") from None
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
    v = read_object(path, "verdict.json", f"run `actlab audit` on {study_dir.parent} again to "
                    "rewrite it (stored runs are reused)")
    v = unversioned(v, str(path))  # the entry is the verdict's fields; verdicts.json has its own
    _check_verdict(v, path, study_dir)
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
        "evidence_json": json.dumps(v.get("evidence", {}), indent=2, sort_keys=True, default=str),
        "regimes": _checked_regimes(v.get("evidence", {}), path),
        "runs": _runs_summary(study_dir, name),
        "wall_seconds": timing.get("seconds", v.get("seconds")),
    }


def collect(out_dir: str | Path) -> dict:
    """Everything the report shows, from the files under `out_dir`."""
    out = Path(out_dir)
    meta_path = out / "audit.json"
    if not meta_path.is_file():
        raise ActlabError(f"{out} holds no audit (no audit.json); run `actlab audit --out {out}` first")
    meta = read_object(meta_path, "audit.json", f"run `actlab audit --out {out}` again to "
                       "rewrite it (stored runs are reused)")
    meta = unversioned(meta, str(meta_path))
    _check_meta(meta, meta_path)
    studies = [
        _study_entry(out / name, name, meta.get("studies", {}).get(name, {}))
        for name in meta.get("order", [])
    ]
    return {"meta": meta, "studies": studies}


# -- checking what was read -------------------------------------------------------------------

class _Damaged(ActlabError):
    """A file of the audit folder that cannot be what it claims to be."""


def read_object(path: Path, kind: str, fix: str) -> dict:
    """The JSON object in `path`; one line naming the file, what is wrong and `fix` otherwise."""
    def damaged(what: str) -> _Damaged:
        return _Damaged(f"{path} is damaged: {what}; {fix}")

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise damaged("not UTF-8 text") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise damaged("nested too deeply to read") from None
    except ValueError as err:  # JSONDecodeError: truncated, empty, or not JSON at all
        raise damaged(f"not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise damaged(f"{kind} must hold a JSON object, this one holds {_json_type(value)}")
    return value


def _json_type(value) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "true/false",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optional_number(value) -> bool:
    return value is None or _is_number(value)


def _optional_str(value) -> bool:
    return value is None or isinstance(value, str)


def _is_str(value) -> bool:
    return isinstance(value, str)


def _is_dict(value) -> bool:
    return isinstance(value, dict)


def _str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _expect(obj: dict, key: str, where: str, ok, what: str, optional: bool = True) -> None:
    """obj[key] passes `ok`, or one line: `where` is damaged, key must be `what`."""
    if key not in obj and optional:
        return
    if key not in obj or not ok(obj[key]):
        got = _json_type(obj[key]) if key in obj else "missing"
        raise _Damaged(f"{where} is damaged: {key!r} must be {what}, it is {got}")


def _plain_name(name: str) -> bool:
    """A study folder's name: one path component, nothing that climbs out of the folder."""
    return (bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
            and "\0" not in name)


def _check_meta(meta: dict, path: Path) -> None:
    where = str(path)
    _expect(meta, "order", where, _str_list, "a list of study names")
    for name in meta.get("order", []):
        if not _plain_name(name):
            raise _Damaged(f"{where} is damaged: study name {name!r} in 'order' is not a plain "
                           "folder name")
    _expect(meta, "studies", where, lambda v: _is_dict(v) and all(map(_is_dict, v.values())),
            "an object of objects")
    for name, timing in meta.get("studies", {}).items():
        entry = f"{where} (studies[{name!r}])"
        _expect(timing, "seconds", entry, _optional_number, "a number or null")
        _expect(timing, "error", entry, _optional_str, "a string or null")
        _expect(timing, "verdict", entry, _optional_str, "a string or null")
    _expect(meta, "preset", where, _optional_str, "a string or null")
    _expect(meta, "seconds", where, _optional_number, "a number or null")
    _expect(meta, "env", where, _is_dict, "an object")
    _expect(meta, "corpus", where, lambda v: v is None or _is_dict(v), "an object or null")
    if isinstance(meta.get("corpus"), dict):
        _expect(meta["corpus"], "chars", f"{where} (corpus)", _is_number, "a number")


def _check_verdict(v: dict, path: Path, study_dir: Path) -> None:
    where = str(path)
    for key in ("claim", "verdict"):
        _expect(v, key, where, _is_str, "a string", optional=False)
    for key in ("quote", "rule", "summary"):
        _expect(v, key, where, _is_str, "a string")
    _expect(v, "caveats", where, _str_list, "a list of strings")
    _expect(v, "figures", where, _str_list, "a list of paths")
    _expect(v, "evidence", where, _is_dict, "an object")
    _expect(v, "seconds", where, _optional_number, "a number or null")
    root = study_dir.resolve()
    for rel in v.get("figures", []):
        plain = bool(rel) and "\0" not in rel and not Path(rel).is_absolute()
        if not plain or not (root / rel).resolve().is_relative_to(root):
            raise _Damaged(f"{where} is damaged: figure {rel!r} is not a path inside {study_dir}")
    extra = v.get("evidence", {}).get("start_with_gelu")
    if isinstance(extra, dict) and isinstance(extra.get("gelu_minus_best"), dict):
        d, entry = extra["gelu_minus_best"], f"{where} (start_with_gelu)"
        for key in ("lo", "hi", "p"):  # JSON's null for a NaN interval reads back as NaN
            if key in d and d[key] is None:
                d[key] = math.nan
            _expect(d, key, entry, _is_number, "a number or null")
        _expect(d, "diff", entry, _optional_number, "a number or null")


def _checked_regimes(evidence: dict, path: Path) -> list[dict]:
    """regimes(evidence), each one's numbers checked: the report formats them as numbers."""
    found = regimes(evidence)
    for g in found:
        where = f"{path} (regime {g['label']})"
        _expect(g, "reference_loss", where, _optional_number, "a number or null")
        base = g.get("baselines")
        if base:
            _expect(g, "baselines", where, _is_dict, "an object")
            for order in ("unigram", "bigram", "trigram"):
                _expect(base, order, where, _is_number, "a number", optional=False)
    return found

"""The output files as a contract (docs/outputs.md): every JSON file a command writes parses
with a strict parser, carries schema_version, and holds only top-level fields the document
lists; every file written is listed too. Older files (without schema_version) still read."""

import fnmatch
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from actlab.cli import main
from actlab.config import TrainConfig, merge
from actlab.errors import ActlabError
from actlab.files.atomic import dumps
from actlab.files.schema import SCHEMA_VERSION

DOC = Path(__file__).resolve().parents[1] / "docs" / "outputs.md"
NOT_VERSIONED = {"tokenizer.json"}  # Hugging Face's format, not actlab's


def _refuse(name):
    raise ValueError(f"non-strict JSON constant {name}")


def strict_loads(text: str):
    return json.loads(text, parse_constant=_refuse)


NESTED = re.compile(r"([A-Za-z_]\w*)(\[\])?\.([A-Za-z_]\w*)")


def documented() -> tuple[dict[str, set[str]], set[str]]:
    """({JSON file name: its documented fields}, every file name or pattern listed in the
    folders' file tables), parsed from the document's tables. Fields are top-level names, and
    `a.b` / `a[].b` for the keys of an object `a` / of each object in the list `a`."""
    fields: dict[str, set[str]] = {}
    files: set[str] = set()
    section, header = None, None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#{2,3} `([^`]+)`\s*$", line)
        if heading:
            section = heading.group(1)
            fields[section] = set()
            continue
        if line.startswith("#"):
            section = None
            continue
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells[0]
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        if header == "file":
            files.update(names)
        elif header == "field" and section is not None:
            fields[section].update(n for n in names if re.fullmatch(r"[A-Za-z_]\w*", n)
                                   or NESTED.fullmatch(n))
    return fields, files


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A tiny run, a smoke study, a smoke audit of one study and a tiny comparison."""
    root = tmp_path_factory.mktemp("outputs")
    assert main(["train", "--n-layer", "1", "--n-embd", "16", "--steps", "3", "--block-size", "16",
                 "--batch-size", "2", "--eval-batches", "1", "--device", "cpu", "--threads", "1",
                 "--quiet", "--out", str(root / "run")]) == 0
    assert main(["study", "facts", "--preset", "smoke", "--quiet", "--out", str(root / "study")]) == 0
    assert main(["audit", "--preset", "smoke", "--studies", "facts", "--quiet",
                 "--out", str(root / "audit")]) == 0
    from actlab.lab.compare import run_compare

    run_compare(None, ["relu", "gelu"], 20.0, 2, root / "compare", progress=False, lr=1e-3,
                steps=3, executor="serial")
    return root


def _json_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".json", ".jsonl"))


def test_every_json_file_is_strict_versioned_and_documented(written):
    fields, _ = documented()
    paths = _json_files(written)
    names = {p.name for p in paths}
    # what the four commands write, at least (counted by hand from docs/outputs.md)
    assert {"config.json", "env.json", "summary.json", "metrics.jsonl", "verdict.json",
            "audit.json", "verdicts.json", "plan.json", "ranking.json"} <= names
    assert len([p for p in paths if p.name == "verdict.json"]) == 2  # the study's, the audit's
    for path in paths:
        rel = path.relative_to(written)
        assert path.name in fields, f"{rel}: no section in docs/outputs.md"
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            rows = [strict_loads(line) for line in text.splitlines()]
            assert len(rows) == 3 and [r["step"] for r in rows] == [0, 1, 2]
            objects = rows
        else:
            obj = strict_loads(text)
            assert isinstance(obj, dict), rel
            if path.name not in NOT_VERSIONED:
                assert obj.get("schema_version") == SCHEMA_VERSION == 1, f"{rel}: no schema_version"
            objects = [obj]
        for obj in objects:
            extra = set(obj) - fields[path.name]
            assert not extra, f"{rel}: fields {sorted(extra)} are not in docs/outputs.md"
            _check_nested(obj, fields[path.name], rel)


def _check_nested(obj: dict, names: set[str], rel) -> None:
    """The keys of every object whose fields the document lists one by one (`a.b`, `a[].b`)."""
    parents: dict[tuple[str, bool], set[str]] = {}
    for name in names:
        m = NESTED.fullmatch(name)
        if m:
            parents.setdefault((m.group(1), bool(m.group(2))), set()).add(m.group(3))
    for (parent, is_list), keys in parents.items():
        value = obj.get(parent)
        items = value if is_list else [value]
        for item in items or []:
            if isinstance(item, dict):
                extra = set(item) - keys
                assert not extra, f"{rel}: {parent} fields {sorted(extra)} are not in docs/outputs.md"


def test_every_file_written_is_listed(written):
    _, listed = documented()
    for path in sorted(p for p in written.rglob("*") if p.is_file()):
        parts = path.relative_to(written).parts
        tail = "/".join(parts[-2:])
        ok = parts[-1] in listed or any(fnmatch.fnmatch(tail, pat) for pat in listed)
        assert ok, f"{path.relative_to(written)} is not listed in docs/outputs.md"


def test_the_document_lists_the_fields_it_promises():
    fields, files = documented()
    assert fields["summary.json"] >= {"schema_version", "outcome", "steps", "val_loss", "baselines",
                                      "baselines.trigram"}
    assert fields["metrics.jsonl"] == {"step", "train_loss", "lr", "grad_norm", "time_s", "val_loss"}
    assert fields["vocab.json"] == {"schema_version", "kind", "chars"}
    assert {"tokenizer.json", "state/checkpoint.pt", "tb/", "runs.sqlite", "figures/*.png"} <= files
    # config.json documents every TrainConfig field, and every ModelConfig one under model.
    cfg = TrainConfig().to_dict()
    top = {n for n in fields["config.json"] if "." not in n}
    assert top == set(cfg) | {"schema_version"}
    assert {n for n in fields["config.json"] if "." in n} == {f"model.{k}" for k in cfg["model"]}
    assert {"rows[].act", "rows[].lo", "rows[].hi", "rows[].vs_best"} <= fields["ranking.json"]


def test_schema_version_is_not_part_of_the_hash(written):
    stored = strict_loads((written / "run" / "config.json").read_text(encoding="utf-8"))
    assert stored["schema_version"] == 1
    cfg = TrainConfig.from_dict(stored)  # merge drops the key
    assert "schema_version" not in cfg.to_dict()
    plain = {k: v for k, v in stored.items() if k != "schema_version"}
    blob = json.dumps(plain, sort_keys=True, separators=(",", ":"))
    assert cfg.hash() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert TrainConfig.from_dict(plain).hash() == cfg.hash()  # a config.json from before
    assert merge(TrainConfig(), {"schema_version": 1, "seed": 3}).seed == 3
    with pytest.raises(ActlabError, match="schema_version 2, newer"):
        merge(TrainConfig(), {"schema_version": 2})


def test_files_written_before_versions_still_read(written, tmp_path):
    """An audit folder whose JSON files have no schema_version renders as before, and the
    report it writes has one; a comparison resumes from such a plan."""
    from actlab.lab.compare import _load_plan
    from actlab.report import collect, render_report

    old = tmp_path / "audit"
    shutil.copytree(written / "audit", old)
    for name in ("audit.json", "facts/verdict.json"):
        obj = strict_loads((old / name).read_text(encoding="utf-8"))
        del obj["schema_version"]
        (old / name).write_text(dumps(obj), encoding="utf-8")
    data = collect(old)
    assert data["studies"][0]["verdict"] == "NOT SUPPORTED"
    assert "schema_version" not in data["studies"][0]
    render_report(old)
    again = strict_loads((old / "verdicts.json").read_text(encoding="utf-8"))
    assert again["schema_version"] == 1 and again["verdicts"][0]["study"] == "facts"
    assert "schema_version" not in again["verdicts"][0]

    plan = strict_loads((written / "compare" / "plan.json").read_text(encoding="utf-8"))
    key = {k: plan[k] for k in ("data_hash", "acts", "seeds", "budget_s", "lr", "tokenizer",
                                "device", "fixed_steps", "tune_rounds")}
    assert _load_plan(written / "compare", key)["steps"] == 3
    del plan["schema_version"]
    (tmp_path / "plan.json").write_text(dumps(plan), encoding="utf-8")
    assert _load_plan(tmp_path, key)["steps"] == 3
    (tmp_path / "plan.json").write_text(dumps({**plan, "schema_version": 99}), encoding="utf-8")
    assert _load_plan(tmp_path, key) is None  # a later layout: planned afresh


def test_a_newer_verdict_file_is_refused_in_one_line(written, tmp_path):
    from actlab.report import collect

    new = tmp_path / "audit"
    shutil.copytree(written / "audit", new)
    obj = strict_loads((new / "facts" / "verdict.json").read_text(encoding="utf-8"))
    (new / "facts" / "verdict.json").write_text(dumps({**obj, "schema_version": 7}), encoding="utf-8")
    with pytest.raises(ActlabError, match=r"verdict.json has schema_version 7, newer than the 1"):
        collect(new)


def test_non_finite_numbers_are_written_as_null(tmp_path):
    import numpy as np

    from actlab.files.atomic import write_json

    path = write_json(tmp_path / "x.json", {"a": float("nan"), "b": [float("inf")],
                                            "c": np.float32("nan"), "d": np.int64(3),
                                            "e": tmp_path})
    assert strict_loads(path.read_text()) == {"a": None, "b": [None], "c": None, "d": 3,
                                              "e": str(tmp_path)}
    with pytest.raises(TypeError):
        write_json(tmp_path / "y.json", {"a": object()})

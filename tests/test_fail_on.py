"""`--fail-on`: verdicts named there make audit and study exit 3 after writing every file; an
unknown name is a usage error (exit 2) before anything runs. The facts study reads the model
zoo (no training): its smoke verdict is NOT SUPPORTED (GPT-1 used GELU), its parts SUPPORTED,
NOT SUPPORTED and INCONCLUSIVE."""

import argparse

import pytest

from actlab.cli import main
from actlab.lab.gate import VERDICT_TRIPPED, tripped, verdict_names


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gate") / "audit"


def _audit(out, *extra):
    return main(["audit", "--preset", "smoke", "--studies", "facts", "--quiet", "--out", str(out),
                 *extra])


def test_a_named_verdict_exits_3_after_writing_everything(audit_dir, capsys):
    assert VERDICT_TRIPPED == 3
    assert _audit(audit_dir, "--fail-on", "NOT SUPPORTED") == 3
    err = capsys.readouterr().err
    assert "actlab audit: --fail-on: 1 verdict tripped it: facts NOT SUPPORTED" in err
    for name in ("audit.json", "verdicts.json", "report.html", "report.md", "facts/verdict.json"):
        assert (audit_dir / name).is_file(), name


@pytest.mark.parametrize("names, code", [
    ("SUPPORTED,INCONCLUSIVE,SUPPORTED WITH CAVEAT", 0),  # every verdict but the study's
    ("not_supported", 3), ("Not-Supported,INCONCLUSIVE", 3), (" not   supported ,", 3),
])
def test_names_match_without_case_and_with_separators(audit_dir, names, code, capsys):
    assert _audit(audit_dir, "--fail-on", names) == code
    assert ("tripped it" in capsys.readouterr().err) == (code == 3)


def test_without_the_flag_the_verdict_does_not_change_the_exit(audit_dir):
    assert _audit(audit_dir) == 0


@pytest.mark.parametrize("names, what", [("SUPORTED", "unknown verdict 'SUPORTED'"),
                                         ("SUPPORTED,ERROR", "unknown verdict 'ERROR'"),
                                         (",", "no verdict named")])
def test_an_unknown_name_is_one_line_and_exit_2_before_anything_runs(tmp_path, names, what, capsys):
    with pytest.raises(SystemExit) as stop:
        _audit(tmp_path / "never", "--fail-on", names)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert what in err and len(err.strip().splitlines()) == 1
    assert "known: SUPPORTED, SUPPORTED WITH CAVEAT, NOT SUPPORTED, INCONCLUSIVE" in err or what == "no verdict named"
    assert not (tmp_path / "never").exists()


def test_study_fails_on_its_verdict(tmp_path, capsys):
    out = tmp_path / "facts"
    assert main(["study", "facts", "--preset", "smoke", "--quiet", "--out", str(out),
                 "--fail-on", "not supported"]) == 3
    assert "actlab study: --fail-on: 1 verdict tripped it: facts NOT SUPPORTED" in capsys.readouterr().err
    assert (out / "verdict.json").is_file()
    assert main(["study", "facts", "--preset", "smoke", "--quiet", "--out", str(out),
                 "--fail-on", "INCONCLUSIVE"]) == 0


def test_a_failed_study_keeps_exit_1(audit_dir, monkeypatch, capsys):
    """A failed study has no verdict: exit 1 (run again) comes before 3, and the tripped line
    is still printed. Claims (user-<id>) trip it like studies."""
    import actlab.lab.audit as audit

    _audit(audit_dir)  # the folder the report is printed from
    meta = {"studies": {"facts": {"verdict": "NOT SUPPORTED", "error": None, "seconds": 0.0},
                        "gates": {"verdict": None, "error": "RuntimeError: x", "seconds": 1.0}},
            "paths": {"html": str(audit_dir / "report.html")}}
    monkeypatch.setattr(audit, "run_audit", lambda *a, **k: meta)
    assert _audit(audit_dir, "--fail-on", "NOT SUPPORTED") == 1
    err = capsys.readouterr().err
    assert "1 studies failed (gates)" in err and "tripped it: facts NOT SUPPORTED" in err
    meta["studies"] = {"user-mine": {"verdict": "INCONCLUSIVE", "error": None, "seconds": 0.0}}
    assert _audit(audit_dir, "--fail-on", "INCONCLUSIVE") == 3
    assert "tripped it: user-mine INCONCLUSIVE" in capsys.readouterr().err


def test_gate_functions():
    assert verdict_names("supported with caveat,SUPPORTED") == {"SUPPORTED WITH CAVEAT", "SUPPORTED"}
    with pytest.raises(argparse.ArgumentTypeError):
        verdict_names("supportedd")
    hits = tripped({"a": "SUPPORTED", "b": None, "c": "INCONCLUSIVE", "d": "SUPPORTED"},
                   frozenset({"SUPPORTED"}))
    assert hits == [("a", "SUPPORTED"), ("d", "SUPPORTED")]
    assert tripped({"a": "SUPPORTED"}, None) == []

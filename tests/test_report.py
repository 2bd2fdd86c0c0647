"""The audit report as a person sees it: verdict table first, escaped user strings,
figures embedded, and a real headless-browser render that is not blank."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from actlab.lab.audit import run_audit
from actlab.analysis.figures import new_figure, save
from actlab.report import render_report
from actlab.studies.base import STUDIES, SUPPORTED, Verdict, register_study
from actlab.engine.sweep import run_grid

HOSTILE = "<script>alert('x')</script>"


def _square(params):
    return {"outcome": "completed", "value": params["x"] ** 2,
            "history": [{"step": 0, "loss": float(params["x"])}]}


def _fake_study(preset, out_dir, progress=True):
    results = run_grid("fake-report", [{"x": 1}, {"x": 2}, {"corpus": HOSTILE, "x": 3}], _square,
                       out_dir, progress=False)
    fig, axes = new_figure()
    axes[0][0].plot([r["value"] for r in results])
    rel = "figures/values.png"
    save(fig, out_dir / rel)
    return Verdict(claim="C1", quote="quoted words", rule=f"rule text {HOSTILE}", verdict=SUPPORTED,
                   evidence={"values": [r["value"] for r in results], "name": HOSTILE},
                   figures=[rel], preset=preset, study="fake-report",
                   summary=f"values {[r['value'] for r in results]} on corpus {HOSTILE}",
                   caveats=["only a test"])


def _broken_study(preset, out_dir, progress=True):
    raise RuntimeError("this study is broken on purpose")


if "fake-report" not in STUDIES:
    register_study("fake-report", "C1")(_fake_study)
    register_study("broken-report", "C2")(_broken_study)


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    meta = run_audit("smoke", out, studies=("fake-report", "broken-report"), progress=False)
    assert meta["studies"]["broken-report"]["error"].startswith("RuntimeError")
    return out


def test_audit_writes_reports_and_keeps_going_after_a_failure(audit_dir):
    for name in ("report.html", "report.md", "verdicts.json", "audit.json"):
        assert (audit_dir / name).is_file()
    verdicts = json.loads((audit_dir / "verdicts.json").read_text())
    table = {r["study"]: r for r in verdicts["table"]}
    assert table["fake-report"]["verdict"] == SUPPORTED
    assert table["broken-report"]["verdict"] == "ERROR"
    assert "broken on purpose" in (audit_dir / "broken-report" / "error.txt").read_text()


def test_html_escapes_user_strings_and_embeds_figures(audit_dir):
    html = (audit_dir / "report.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert html.count("data:image/png;base64,") == 1
    assert html.index('id="verdicts"') < html.index('id="fake-report"')  # the table comes first
    assert "http://" not in html and "https://" not in html  # nothing to fetch when viewing


def test_report_renders_again_from_stored_results(audit_dir):
    before = (audit_dir / "verdicts.json").read_text()
    (audit_dir / "report.html").unlink()
    render_report(audit_dir)
    assert (audit_dir / "report.html").is_file()
    assert (audit_dir / "verdicts.json").read_text() == before


def test_markdown_has_the_verdict_table(audit_dir):
    md = (audit_dir / "report.md").read_text()
    assert "| C1 | fake-report | **SUPPORTED** |" in md


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars"]


@pytest.mark.slow
def test_headless_browser_renders_a_non_blank_page_with_the_verdict_table(audit_dir, tmp_path):
    chrome = _chromium()
    if chrome is None:
        pytest.skip("no chromium on this machine (.ci/run installs it)")
    url = (audit_dir / "report.html").as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([chrome, *CHROME_FLAGS, *profile, "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'id="verdicts"' in dom and "fake-report" in dom and "SUPPORTED" in dom
    png = tmp_path / "page.png"
    subprocess.run([chrome, *CHROME_FLAGS, *profile, f"--screenshot={png}", "--window-size=1200,1600", url],
                   capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    pixels = mpimg.imread(png)
    assert pixels.shape[0] >= 1000
    assert float(np.std(pixels[..., :3])) > 0.02  # not a blank page


HOSTILE_ID = "C9|*<script>alert(1)</script>"
HOSTILE_NAME = "user-a|b*c_[x]"


def _hand_made_audit(out):
    """An audit folder written by hand: one study whose claim id, name, texts and corpus path
    are hostile user strings."""
    study = out / HOSTILE_NAME
    study.mkdir(parents=True)
    verdict = {"claim": HOSTILE_ID, "quote": "a *quote*\nover two lines", "rule": "rule `x` | y",
               "verdict": SUPPORTED, "evidence": {"note": "```\n<script>"}, "figures": [],
               "preset": "smoke", "seconds": 1.0, "study": HOSTILE_NAME,
               "summary": "diff <b>0.1</b> | p *0.2*", "caveats": ["see [this](javascript:x)"]}
    (study / "verdict.json").write_text(json.dumps(verdict))
    meta = {"preset": "smoke", "order": [HOSTILE_NAME], "seconds": 3.0,
            "studies": {HOSTILE_NAME: {"seconds": 1.0, "error": None, "verdict": SUPPORTED}},
            "corpus": {"name": "x|y", "path": "/data/<i>a|b</i>*.txt", "chars": 10,
                       "sha256": "ab", "tokenizer": "char"},
            "env": {"platform": "linux | <b>"}}
    (out / "audit.json").write_text(json.dumps(meta))


def test_markdown_escapes_user_strings(tmp_path):
    import re

    _hand_made_audit(tmp_path)
    render_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "<script>" not in md.split("```json")[0] and "<b>" not in md and "<i>" not in md
    row = next(line for line in md.splitlines() if line.startswith("| C9"))
    assert row == ("| C9\\|\\*&lt;script&gt;alert(1)&lt;/script&gt; | user-a\\|b\\*c\\_\\[x\\] | "
                   "**SUPPORTED** | diff &lt;b&gt;0.1&lt;/b&gt; \\| p \\*0.2\\* | 1 s |")
    assert len(re.findall(r"(?<!\\)\|", row)) == 6  # five cells, whatever the strings hold
    assert "> a \\*quote\\* over two lines" in md  # one line: a newline cannot start a block
    assert "Corpus: x\\|y (/data/&lt;i&gt;a\\|b&lt;/i&gt;\\*.txt)" in md
    assert "- caveat: see \\[this\\](javascript:x)" in md
    assert "- platform: linux \\| &lt;b&gt;" in md
    # the evidence keeps its text verbatim inside a fence longer than its own backticks
    assert "````json\n{\n  \"note\": \"```\\n<script>\"\n}\n````" in md


def test_html_escapes_a_hostile_claim_id(tmp_path):
    _hand_made_audit(tmp_path)
    render_report(tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "<script>" not in html and "<b>0.1</b>" not in html and "<i>a|b</i>" not in html
    assert "C9|*&lt;script&gt;alert(1)&lt;/script&gt;" in html

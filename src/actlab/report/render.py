"""Turn collected audit results into report.html (self-contained), report.md and verdicts.json."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from actlab.article.references import MODEL_FACTS, SHAZEER_2020_SOURCE, SHAZEER_2020_TABLE1
from actlab.report.collect import collect


def _environment():
    # autoescape: corpus names, formulas and claim texts are user strings and reach the HTML
    return jinja2.Environment(
        loader=jinja2.PackageLoader("actlab.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _fmt_seconds(s) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _verdict_rows(studies: list[dict]) -> list[dict]:
    rows = []
    for s in studies:
        if s["missing"]:
            rows.append({"claim": "-", "study": s["study"], "title": s["study"], "verdict": "ERROR",
                         "summary": s.get("error") or "no verdict stored", "seconds": s.get("seconds")})
            continue
        rows.append({"claim": s["claim"], "study": s["study"], "title": s["title"],
                     "verdict": s["verdict"], "summary": s.get("summary", ""),
                     "seconds": s.get("wall_seconds")})
        extra = (s.get("evidence") or {}).get("start_with_gelu")
        if isinstance(extra, dict) and extra.get("verdict"):
            rows.append({"claim": "R", "study": s["study"], "title": "\"start with GELU\"",
                         "verdict": extra["verdict"], "summary": _gelu_summary(extra),
                         "seconds": None})
    return rows


def _gelu_summary(e: dict) -> str:
    """One line for the recommendation's row, from the convergence study's evidence."""
    parts = [f"GELU ranks {e.get('gelu_rank')} of {e.get('of')}"]
    d = e.get("gelu_minus_best") or {}
    if e.get("best") and e.get("best") != "gelu" and d.get("diff") is not None:
        parts.append(f"GELU - {e['best']} {d['diff']:+.3f} nats [{d.get('lo', 0):+.3f}, {d.get('hi', 0):+.3f}], "
                     f"p = {d.get('p', float('nan')):.2g}")
    if e.get("reason"):
        parts.append(str(e["reason"]))
    return "; ".join(parts)


def _regime_line(g: dict) -> str:
    """The reference loss beside the count-model baselines, and whether it clears the bar."""
    ref = g.get("reference_loss")
    base = g.get("baselines") or {}
    cells = ", ".join(f"{o} {base[o]:.3f}" for o in ("unigram", "bigram", "trigram") if o in base)
    head = f"reference {ref:.3f} nats" if ref is not None else "no reference loss"
    verdict = "in regime" if g.get("in_regime") else f"out of regime: {g.get('reason')}"
    return f"{head} vs {cells or 'no baselines'}; {verdict}"


def corpus_line(meta: dict) -> str:
    """Which text the audit's models trained on: name, path, size, hash and tokenizer (the
    baselines of each setting are in its regime table)."""
    c = meta.get("corpus")
    if not c:
        return "Corpus: not recorded (an audit from before corpora were recorded: the bundled one)."
    return (f"Corpus: {c.get('name')} ({c.get('path')}), {c.get('chars', 0):,} characters, sha256 "
            f"{str(c.get('sha256'))[:16]}, tokenizer {c.get('tokenizer')}; its n-gram baselines "
            "are in each study's regime table.")


def markdown(data: dict) -> str:
    meta, studies = data["meta"], data["studies"]
    lines = ["# actlab audit", "",
             f"Preset `{meta.get('preset')}`, code {meta.get('env', {}).get('git_revision') or meta.get('env', {}).get('code_hash')}, "
             f"{_fmt_seconds(meta.get('seconds'))} in all.", "", corpus_line(meta), "",
             "| claim | study | verdict | evidence | time |", "|---|---|---|---|---|"]
    for r in _verdict_rows(studies):
        summary = str(r["summary"]).replace("|", "\\|")
        lines.append(f"| {r['claim']} | {r['study']} | **{r['verdict']}** | {summary} | {_fmt_seconds(r['seconds'])} |")
    for s in studies:
        if s["missing"]:
            continue
        lines += ["", f"## {s['claim']}: {s['title']} — {s['verdict']}", "", f"> {s['quote']}", "",
                  f"**Rule.** {s['rule']}", ""]
        if s.get("summary"):
            lines += [f"**Result.** {s['summary']}", ""]
        for g in s.get("regimes", []):
            lines.append(f"- regime ({g['label']}): {_regime_line(g)}")
        for c in s.get("caveats", []):
            lines.append(f"- caveat: {c}")
        for f in s["figures"]:
            lines.append(f"![{f['name']}]({f['path']})")
        lines += ["", "<details><summary>evidence</summary>", "", "```json", s["evidence_json"], "```",
                  "", "</details>"]
    lines += ["", "## Environment", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(meta.get("env", {}).items())]
    return "\n".join(lines) + "\n"


def render_report(out_dir: str | Path) -> dict[str, str]:
    """Write report.html, report.md and verdicts.json into `out_dir`; return their paths."""
    out = Path(out_dir)
    data = collect(out)
    env = _environment()
    env.filters["secs"] = _fmt_seconds
    html = env.get_template("report.html.j2").render(
        meta=data["meta"], studies=data["studies"], rows=_verdict_rows(data["studies"]),
        corpus=corpus_line(data["meta"]),
        shazeer=SHAZEER_2020_TABLE1, shazeer_source=SHAZEER_2020_SOURCE, facts=MODEL_FACTS,
    )
    paths = {"html": out / "report.html", "md": out / "report.md", "json": out / "verdicts.json"}
    paths["html"].write_text(html, encoding="utf-8")
    paths["md"].write_text(markdown(data), encoding="utf-8")
    verdicts = {
        "preset": data["meta"].get("preset"),
        "corpus": data["meta"].get("corpus"),
        "env": data["meta"].get("env"),
        "verdicts": [{k: v for k, v in s.items() if k not in ("figures", "evidence_json", "runs", "css")}
                     for s in data["studies"]],
        "table": _verdict_rows(data["studies"]),
    }
    paths["json"].write_text(json.dumps(verdicts, indent=2, default=str) + "\n", encoding="utf-8")
    return {k: str(v) for k, v in paths.items()}

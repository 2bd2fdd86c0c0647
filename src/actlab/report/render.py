"""Turn collected audit results into report.html (self-contained), report.md and verdicts.json.

User strings are escaped in both reports (HTML by jinja's autoescape, Markdown by md());
each file is written atomically, verdicts.json as strict JSON."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import jinja2

from actlab.analysis.numbers import num
from actlab.article.references import MODEL_FACTS, SHAZEER_2020_SOURCE, SHAZEER_2020_TABLE1
from actlab.files.atomic import write_json, write_text
from actlab.files.schema import SCHEMA_VERSION
from actlab.report.collect import collect


def _environment():
    # autoescape everything (the only template is HTML): corpus names, formulas and claim
    # texts are user strings and reach the page
    return jinja2.Environment(
        loader=jinja2.PackageLoader("actlab.report", "templates"),
        autoescape=True,
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
        lo, hi, p = (num(d.get(k)) for k in ("lo", "hi", "p"))  # strict JSON stores NaN as null
        parts.append(f"GELU - {e['best']} {num(d['diff']):+.3f} nats [{lo:+.3f}, {hi:+.3f}], p = {p:.2g}")
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


# Characters that start Markdown formatting inside a line (emphasis, code, links, table
# cells, strike-through, closing heading marks) and the three that start HTML or an entity.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md(text) -> str:
    """`text` as literal Markdown: one line, formatting characters backslash-escaped and HTML
    written as entities, so a claim id, a name or a path from the user shows as typed and
    can neither break the verdict table nor inject markup."""
    flat = " ".join(str(text).split())
    return re.sub("[&<>]", lambda m: _HTML[m.group()], _MD_SPECIAL.sub(r"\\\1", flat))


def md_code(text) -> str:
    """`text` as an inline code span, fenced with more backticks than it holds in a row."""
    flat = " ".join(str(text).split())
    fence = "`" * (max((len(run) for run in re.findall("`+", flat)), default=0) + 1)
    return f"{fence} {flat} {fence}" if flat.startswith("`") or flat.endswith("`") else f"{fence}{flat}{fence}"


def md_block(text: str, lang: str = "") -> list[str]:
    """Lines of a fenced code block holding `text` verbatim: the fence is longer than any run
    of backticks inside, so the text cannot close it early."""
    fence = "`" * max(3, max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return [fence + lang, *text.splitlines(), fence]


def markdown(data: dict) -> str:
    """report.md: the verdict table, then one section per study. Every string that comes
    from the stored results goes through md() (or a code span or block), since claim ids,
    names, corpus paths and formulas are the user's."""
    meta, studies = data["meta"], data["studies"]
    env = meta.get("env", {})
    lines = ["# actlab audit", "",
             f"Preset {md_code(meta.get('preset'))}, code {md(env.get('git_revision') or env.get('code_hash'))}, "
             f"{_fmt_seconds(meta.get('seconds'))} in all.", "", md(corpus_line(meta)), "",
             "| claim | study | verdict | evidence | time |", "|---|---|---|---|---|"]
    for r in _verdict_rows(studies):
        lines.append(f"| {md(r['claim'])} | {md(r['study'])} | **{md(r['verdict'])}** | "
                     f"{md(r['summary'])} | {_fmt_seconds(r['seconds'])} |")
    for s in studies:
        if s["missing"]:
            continue
        lines += ["", f"## {md(s['claim'])}: {md(s['title'])} — {md(s['verdict'])}", "",
                  f"> {md(s['quote'])}", "", f"**Rule.** {md(s['rule'])}", ""]
        if s.get("summary"):
            lines += [f"**Result.** {md(s['summary'])}", ""]
        for g in s.get("regimes", []):
            lines.append(f"- regime ({md(g['label'])}): {md(_regime_line(g))}")
        for c in s.get("caveats", []):
            lines.append(f"- caveat: {md(c)}")
        for f in s["figures"]:
            lines.append(f"![{md(f['name'])}]({quote(str(f['path']), safe='/')})")
        lines += ["", "<details><summary>evidence</summary>", "", *md_block(s["evidence_json"], "json"),
                  "", "</details>"]
    lines += ["", "## Environment", ""]
    lines += [f"- {md(k)}: {md(v)}" for k, v in sorted(env.items())]
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
    write_text(paths["html"], html)
    write_text(paths["md"], markdown(data))
    verdicts = {
        "schema_version": SCHEMA_VERSION,
        "preset": data["meta"].get("preset"),
        "corpus": data["meta"].get("corpus"),
        "env": data["meta"].get("env"),
        "verdicts": [{k: v for k, v in s.items() if k not in ("figures", "evidence_json", "runs", "css")}
                     for s in data["studies"]],
        "table": _verdict_rows(data["studies"]),
    }
    # strict JSON (non-finite numbers as null); what JSON cannot hold as its text
    write_json(paths["json"], verdicts, default=str)
    return {k: str(v) for k, v in paths.items()}

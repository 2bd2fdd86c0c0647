"""Figures of study C4 (output-head), drawn only from stored runs: the distribution of Σp per
vocabulary, loss per byte vs vocabulary size, reliability diagrams, and training curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from actlab.analysis.figures import new_figure, save

COLORS = {"softmax": "tab:blue", "sigmoid": "black", "sigmoid_raw": "tab:red",
          "sigmoid_renorm": "black"}


def _finals(runs: dict) -> list[dict]:
    return [r["final"] for r in runs.values() if r.get("final")]


def sum_p(groups: list[dict], per_vocab: list[dict], path: Path) -> str:
    """Left: histogram of log10 Σp per position, pooled over seeds, one line per V (sigmoid)
    with softmax's single bin at 1 for reference. Right: mean |Σp - 1| vs V for both heads."""
    fig, axes = new_figure(ncols=2, width=5.0, height=3.6)
    ax, ax2 = axes[0]
    cmap = _vocab_colors(len(groups))
    lo_hi = []  # Σp range with any position, to zoom the axis onto the data
    for i, g in enumerate(groups):
        sums = [f["sum_p"] for f in _finals(g["runs"].get("sigmoid", {})) if "hist" in f["sum_p"]]
        if not sums:
            continue
        h = np.sum([s["hist"] for s in sums], axis=0).astype(float)
        edges = np.linspace(*sums[0].get("hist_log10_range", (-2.0, 2.0)), len(h) + 1)
        ax.step(10 ** edges[:-1], h / max(h.sum(), 1.0), where="post", color=cmap[i],
                label=f"sigmoid, V={g['vocab_size']}")
        nz = np.flatnonzero(h)
        lo_hi += [10 ** edges[max(nz[0] - 2, 0)], 10 ** edges[min(nz[-1] + 3, len(h))]]
    ax.axvline(1.0, color=COLORS["softmax"], lw=2, alpha=0.6, label="softmax (all at 1)")
    ax.set_xscale("log")
    if lo_hi:
        ax.set_xlim(min(lo_hi), max(lo_hi))
    ax.set_xlabel("Σp over the vocabulary, per position")
    ax.set_ylabel("fraction of positions")
    ax.set_title("Σp per position (validation)")
    ax.legend(fontsize=7)
    xs = [v["vocab_size"] for v in per_vocab]
    for head in ("softmax", "sigmoid"):
        ys = [v["sum_p"][head]["mean_abs_dev"] for v in per_vocab]
        p5 = [v["sum_p"][head]["p5"] for v in per_vocab]
        p95 = [v["sum_p"][head]["p95"] for v in per_vocab]
        # float64 rounding leaves softmax at ~1e-16: floored so the log axis can show it
        ax2.plot(xs, _floor(ys), "o-", color=COLORS[head], label=f"{head}: mean |Σp-1|")
        if head == "sigmoid":
            for name, q, style in (("p5", p5, ":"), ("p95", p95, "--")):
                ax2.plot(xs, _floor(np.abs(np.asarray(q) - 1)), style, color=COLORS[head],
                         label=f"sigmoid: |{name} - 1|")
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("vocabulary size V")
    ax2.set_ylabel("|Σp - 1|")
    ax2.set_title("distance from a distribution")
    ax2.legend(fontsize=7)
    return save(fig, path)


def loss_vs_vocab(per_vocab: list[dict], gap_tol: float, path: Path,
                  bars: list[dict | None] | None = None) -> str:
    """Validation nats per byte vs V: softmax, renormalised sigmoid (95% CI over seeds), and
    the unnormalised sigmoid -log p_y, with each size's trigram baseline per byte where `bars`
    (per size, {"trigram": ...} or None) gives it; beside it the relative gap against the
    tolerance `gap_tol` (the study's GAP_TOL)."""
    fig, axes = new_figure(ncols=2, width=5.0, height=3.6)
    ax, ax2 = axes[0]
    xs = np.asarray([v["vocab_size"] for v in per_vocab], dtype=float)
    for key, label, style in (("softmax", "softmax", "o-"), ("sigmoid", "sigmoid, p / Σp", "s-"),
                              ("sigmoid_raw", "sigmoid, raw p", "^:")):
        ci = [v["nats_per_byte"][key] for v in per_vocab]
        m = np.asarray([c["mean"] for c in ci], dtype=float)
        lo = np.asarray([c["lo"] if _ok(c["lo"]) else c["mean"] for c in ci], dtype=float)
        hi = np.asarray([c["hi"] if _ok(c["hi"]) else c["mean"] for c in ci], dtype=float)
        ax.errorbar(xs, m, yerr=[m - lo, hi - m], fmt=style, capsize=3, label=label,
                    color=COLORS.get(key, "black"))
    tri = np.asarray([b["trigram"] if b else np.nan for b in bars or []], dtype=float)
    if tri.size and np.isfinite(tri).any():  # the regime bar of each size's softmax head
        ax.plot(xs, tri, "x--", color="grey", label="trigram baseline (per byte)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("vocabulary size V")
    ax.set_ylabel("validation nats per byte")
    ax.set_title("loss per byte of text (95% CI)")
    ax.legend(fontsize=7)
    g = [v["gap_rel"] for v in per_vocab]
    m = np.asarray([c["mean"] for c in g], dtype=float)
    lo = np.asarray([c["lo"] if _ok(c["lo"]) else c["mean"] for c in g], dtype=float)
    hi = np.asarray([c["hi"] if _ok(c["hi"]) else c["mean"] for c in g], dtype=float)
    ax2.errorbar(xs, 100 * m, yerr=[100 * (m - lo), 100 * (hi - m)], fmt="o-", capsize=3, color="black")
    for v in per_vocab:
        pts = [100 * x for x in v["gap_rel"]["per_seed"] if x is not None]
        ax2.plot([v["vocab_size"]] * len(pts), pts, ".", color="grey", alpha=0.7)
    ax2.axhline(100 * gap_tol, color="tab:red", ls="--", lw=1, label=f"tolerance {gap_tol:.0%}")
    ax2.axhline(0, color="grey", lw=0.8)
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("vocabulary size V")
    ax2.set_ylabel("sigmoid (renormalised) vs softmax, %")
    ax2.set_title("relative gap per seed and mean (95% CI)")
    ax2.legend(fontsize=7)
    return save(fig, path)


def reliability(groups: list[dict], path: Path) -> str:
    """Reliability diagrams (accuracy vs confidence per bin, seeds pooled), one panel per V."""
    fig, axes = new_figure(ncols=len(groups), width=3.4, height=3.4)
    for ax, g in zip(axes[0], groups):
        for head, kind, label in (("softmax", "softmax", "softmax"),
                                  ("sigmoid", "sigmoid_raw", "sigmoid raw"),
                                  ("sigmoid", "sigmoid_renorm", "sigmoid p / Σp")):
            bins = [f["calibration"][kind] for f in _finals(g["runs"].get(head, {}))
                    if kind in f.get("calibration", {})]
            if not bins:
                continue
            n = np.sum([b["count"] for b in bins], axis=0).astype(float)
            conf = np.sum([b["conf_sum"] for b in bins], axis=0)
            hit = np.sum([b["hit_sum"] for b in bins], axis=0)
            keep = n > 0
            ece = float(np.abs(hit - conf).sum() / max(n.sum(), 1.0))
            ax.plot(conf[keep] / n[keep], hit[keep] / n[keep], "o-", ms=3, color=COLORS[kind],
                    label=f"{label} (pooled ECE {ece:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top-1 confidence")
        ax.set_ylabel("top-1 accuracy")
        ax.set_title(f"V={g['vocab_size']} ({g['label']})")
        ax.legend(fontsize=6, loc="upper left")
    return save(fig, path)


def training(groups: list[dict], path: Path) -> str:
    """Top: validation nats per byte during training (renormalised for sigmoid), mean over
    seeds. Bottom: the sigmoid head's Σp during training (mean, and the 5-95% band)."""
    fig, axes = new_figure(ncols=len(groups), nrows=2, width=3.4, height=3.0)
    for col, g in enumerate(groups):
        top, bottom = axes[0][col], axes[1][col]
        for head in ("softmax", "sigmoid"):
            curves = [_track(r) for r in g["runs"].get(head, {}).values()]
            curves = [c for c in curves if c[0]]
            if not curves:
                continue
            width = min(len(c[0]) for c in curves)
            x = np.asarray(curves[0][0][:width]) + 1  # steps taken
            npb = np.asarray([c[1]["val_nats_per_byte"][:width] for c in curves], dtype=float)
            top.plot(x, np.nanmean(npb, axis=0), "o-", ms=3, color=COLORS[head], label=head)
            if head == "sigmoid":
                for key, style in (("sum_p_mean", "-"), ("sum_p_p5", ":"), ("sum_p_p95", "--")):
                    y = np.asarray([c[1][key][:width] for c in curves], dtype=float)
                    bottom.plot(x, np.nanmean(y, axis=0), style, color="black", label=key[6:])
        bottom.axhline(1.0, color=COLORS["softmax"], lw=1.5, alpha=0.6, label="softmax")
        top.set_title(f"V={g['vocab_size']} ({g['label']})")
        top.set_ylabel("val nats per byte")
        top.legend(fontsize=7)
        bottom.set_xlabel("step")
        bottom.set_ylabel("Σp (sigmoid)")
        bottom.legend(fontsize=6)
    return save(fig, path)


def _track(result: dict) -> tuple[list[int], dict[str, list[float]]]:
    keys = ("val_nats_per_byte", "sum_p_mean", "sum_p_p5", "sum_p_p95")
    rows = [h for h in result.get("history", []) if "val_nats_per_byte" in h]
    vals = {k: [h[k] if h.get(k) is not None else math.nan for h in rows] for k in keys}
    return [int(h["step"]) for h in rows], vals


def _floor(values) -> np.ndarray:
    return np.maximum(np.asarray(values, dtype=float), 1e-17)


def _ok(v) -> bool:
    return v is not None and math.isfinite(v)


def _vocab_colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.1 + 0.75 * i / max(n - 1, 1)) for i in range(n)]


def draw_all(out: Path, groups: list[dict], per_vocab: list[dict], gap_tol: float,
             bars: list[dict | None] | None = None) -> list[str]:
    """The study's four figures (bars: each size's baselines per byte, or None); returns paths
    relative to `out`."""
    fig_dir = out / "figures"
    paths = [
        sum_p(groups, per_vocab, fig_dir / "sum_p.png"),
        loss_vs_vocab(per_vocab, gap_tol, fig_dir / "nats_per_byte.png", bars),
        reliability(groups, fig_dir / "reliability.png"),
        training(groups, fig_dir / "training.png"),
    ]
    return [str(Path(p).relative_to(out)) for p in paths]

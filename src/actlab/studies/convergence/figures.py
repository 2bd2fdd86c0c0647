"""Figures of study C3 (convergence) and of `actlab compare`, drawn only from stored runs.

loss curves with 95% CI bands, validation loss against training time, final validation loss
with CIs (best first), learning-rate sensitivity, and tokens/s per activation. Each function
takes plain data and a path.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from actlab.analysis.figures import new_figure, save
from actlab.analysis.ranking import smoothed
from actlab.analysis.stats import mean_band


def colors(acts) -> dict[str, tuple]:
    """One stable colour per activation; sigmoid always black so it stands out."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    out, i = {}, 0
    for act in sorted(acts):
        if act == "sigmoid":
            out[act] = (0.0, 0.0, 0.0, 1.0)
        else:
            out[act] = cmap(i % 20)
            i += 2 if len(acts) <= 10 else 1  # dark shades of tab20 while there is room
    return out


def loss_curves(runs: dict[str, dict], order: list[str], path: Path, title: str) -> str:
    """Trailing-mean training loss vs step per activation (mean over seeds, 95% CI band)."""
    col = colors(order)
    fig, axes = new_figure(width=6.4, height=4.0)
    ax = axes[0][0]
    for act in order:
        curves = [smoothed(r["history"]) for r in runs[act].values() if r.get("history")]
        if not curves:
            continue
        width = min(len(c[0]) for c in curves)
        x = np.asarray(curves[0][0][:width])
        mean, half = mean_band(np.asarray([c[1][:width] for c in curves], dtype=float))
        ax.plot(x, mean, color=col[act], lw=2.2 if act == "sigmoid" else 1.2, label=act)
        ax.fill_between(x, mean - half, mean + half, color=col[act], alpha=0.15, lw=0)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/token, trailing mean)")
    finals = [v for act in order for r in runs[act].values()
              for v in [r.get("final_val_loss")] if v is not None and math.isfinite(v)]
    if finals:  # the early steps dwarf the differences that matter: zoom on the tail
        ax.set_ylim(min(finals) * 0.97, max(finals) * 1.25)
    ax.legend(fontsize=7, ncols=2)
    ax.set_title(title)
    return save(fig, path)


def val_vs_time(runs: dict[str, dict], order: list[str], path: Path, title: str) -> str | None:
    """Validation loss against seconds since the run started, mean over seeds at each
    evaluation: which activation gets lower for the same wall-clock time. Completed runs only
    (a diverged seed would cut every curve short). None when the stored runs carry no time
    stamps (written before they were recorded)."""
    series = {}
    for act in order:
        evals = [[(r["time_s"], r["val_loss"]) for r in run.get("history", [])
                  if "val_loss" in r and "time_s" in r] for run in runs[act].values()
                 if run.get("outcome", "completed") == "completed"]
        evals = [e for e in evals if e]
        if evals:
            n = min(len(e) for e in evals)
            pts = np.asarray([e[:n] for e in evals], dtype=float)  # seeds x evals x (t, loss)
            series[act] = pts[:, :, 0].mean(axis=0), pts[:, :, 1].mean(axis=0)
    if not series:
        return None
    col = colors(order)
    fig, axes = new_figure(width=6.4, height=4.0)
    ax = axes[0][0]
    for act, (t, loss) in series.items():
        keep = np.isfinite(loss)
        ax.plot(t[keep], loss[keep], "o-", ms=3, color=col[act],
                lw=2.2 if act == "sigmoid" else 1.2, label=act)
    ax.set_xlabel("seconds since the run started, mean over seeds (shared CPU: compare, do not quote)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.legend(fontsize=7, ncols=2)
    ax.set_title(title)
    return save(fig, path)


def final_loss(summary: dict[str, dict], order: list[str], path: Path, title: str) -> str:
    """Mean final validation loss with its 95% CI per activation, best on top."""
    col = colors(order)
    fig, axes = new_figure(width=6.0, height=0.35 * len(order) + 1.4)
    ax = axes[0][0]
    y = np.arange(len(order))[::-1]
    for yi, act in zip(y, order):
        s = summary[act]
        if not math.isfinite(s["mean"]):
            ax.text(0.02, yi, f"{act}: diverged", transform=ax.get_yaxis_transform(), va="center")
            continue
        err = [[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]] if math.isfinite(s["lo"]) else None
        ax.errorbar([s["mean"]], [yi], xerr=err, fmt="o", color=col[act], capsize=3)
        pts = [v for v in s["losses"] if v is not None]
        ax.plot(pts, [yi] * len(pts), "|", color=col[act], alpha=0.6, ms=8)
        if s.get("n_diverged"):
            ax.annotate(f" {s['n_diverged']} diverged", (s["mean"], yi), fontsize=7)
    ax.set_yticks(y, order)
    ax.set_xlabel("final validation loss (nats/token); dot = mean, bar = 95% CI, ticks = seeds")
    ax.set_title(title)
    return save(fig, path)


def lr_sensitivity(lrs: dict[str, dict], order: list[str], path: Path) -> str:
    """Final validation loss of the tuning runs vs learning rate; the chosen rate circled."""
    col = colors(order)
    fig, axes = new_figure(width=6.0, height=4.0)
    ax = axes[0][0]
    for act in order:
        pts = lrs[act]
        vals = [v if math.isfinite(v) else np.nan for v in pts["val_loss"]]
        ax.plot(pts["lrs"], vals, "-o", ms=3, color=col[act], label=act,
                lw=2.2 if act == "sigmoid" else 1.0)
        best = pts["lrs"].index(pts["lr"])
        if math.isfinite(pts["val_loss"][best]):
            ax.plot([pts["lr"]], [pts["val_loss"][best]], "o", ms=9, mfc="none", color=col[act])
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate (AdamW)")
    ax.set_ylabel("final validation loss, tuning seed")
    ax.legend(fontsize=7, ncols=2)
    ax.set_title("learning-rate sensitivity (circle = rate used for the seeds)")
    return save(fig, path)


def throughput(summary: dict[str, dict], order: list[str], path: Path) -> str:
    """Training tokens/s per activation (mean over seeds, 95% CI)."""
    col = colors(order)
    fig, axes = new_figure(width=6.0, height=3.6)
    ax = axes[0][0]
    means = [summary[a]["tokens_per_s"]["mean"] for a in order]
    errs = [[m - summary[a]["tokens_per_s"]["lo"] if math.isfinite(summary[a]["tokens_per_s"]["lo"])
             else 0 for a, m in zip(order, means)],
            [summary[a]["tokens_per_s"]["hi"] - m if math.isfinite(summary[a]["tokens_per_s"]["hi"])
             else 0 for a, m in zip(order, means)]]
    ax.bar(range(len(order)), means, yerr=errs, color=[col[a] for a in order], capsize=3)
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
    ax.set_ylabel("training tokens/s (wall clock)")
    ax.set_title("what each activation costs (shared CPU: compare ratios)")
    return save(fig, path)


def draw_all(out: Path, runs, summary, ranking, lrs) -> list[str]:
    """The study's figures (the time one only for runs stored with time stamps); returns
    paths relative to `out`."""
    fig_dir = out / "figures"
    paths = [
        loss_curves(runs, ranking, fig_dir / "loss_curves.png", "loss curves (mean, 95% CI over seeds)"),
        val_vs_time(runs, ranking, fig_dir / "val_loss_vs_time.png",
                    "validation loss vs training time (mean over seeds)"),
        final_loss(summary, ranking, fig_dir / "final_loss.png", "final validation loss, best on top"),
        lr_sensitivity(lrs, ranking, fig_dir / "lr_sensitivity.png"),
        throughput(summary, ranking, fig_dir / "tokens_per_s.png"),
    ]
    return [str(Path(p).relative_to(out)) for p in paths if p]

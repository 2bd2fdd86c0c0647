"""Figures of study C7, drawn from the per-activation numbers the study stored in its evidence:
the learning-rate U-curves with unstable runs marked, time to the target loss with 95% CIs
(CPU-seconds, tokens, and tokens per CPU-second), and the final losses of the seeds."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from actlab.analysis.figures import new_figure, save
from actlab.studies.convergence.figures import colors


def lr_curves(per_act: dict, order: list[str], baselines: dict, path: Path) -> str:
    """Final validation loss against learning rate per activation; an unstable run is an x
    (drawn at the top edge when its loss is not finite), the best rate circled, the usable
    range (within the rule's margin of the best) a thick segment; unigram and trigram lines."""
    col = colors(order)
    fig, axes = new_figure(width=6.4, height=4.2)
    ax = axes[0][0]
    finite = [v for a in order for v in per_act[a]["grid"]["val_loss"] if math.isfinite(v)]
    top = min(max(finite, default=4.0), baselines["unigram"] * 1.1) if finite else 4.0
    for act in order:
        g, c = per_act[act]["grid"], col[act]
        lw = 2.2 if act == "sigmoid" else 1.1
        vals = [v if math.isfinite(v) else np.nan for v in g["val_loss"]]
        ax.plot(g["lrs"], np.minimum(vals, top), "-o", ms=3, color=c, lw=lw, label=act)
        bad = [(lr, min(v, top) if math.isfinite(v) else top)
               for lr, v, n in zip(g["lrs"], g["val_loss"], g["unstable"]) if n]
        if bad:
            ax.plot(*zip(*bad), "x", ms=9, mew=2, color=c)
        r = per_act[act]
        if math.isfinite(r["best_grid_loss"]):
            ax.plot([r["lr"]], [r["best_grid_loss"]], "o", ms=9, mfc="none", color=c)
            lo, hi = r["usable_lrs"]
            ax.plot([lo, hi], [r["best_grid_loss"]] * 2, color=c, lw=4, alpha=0.35,
                    solid_capstyle="butt")
    for name, ls in (("unigram", ":"), ("trigram", "--")):
        if baselines[name] <= top * 1.02:
            ax.axhline(baselines[name], color="grey", ls=ls, lw=0.8)
            ax.annotate(name, (ax.get_xlim()[0], baselines[name]), fontsize=7, color="grey",
                        va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate (AdamW), tuning seed")
    ax.set_ylabel("final validation loss (nats/token)")
    ax.legend(fontsize=7, ncols=2)
    ax.set_title("learning-rate sensitivity (x = unstable run, circle = best, bar = usable)")
    return save(fig, path)


def _bars(ax, per_act: dict, order: list[str], key: str, col: dict, label: str) -> None:
    """Mean with 95% CI over the seeds that reached the target, one tick per such seed, and
    how many reached it."""
    for i, act in enumerate(order):
        r = per_act[act]
        ci = r[f"{key}_to_target_ci"] if key else r["tokens_per_cpu_s"]
        pts = [h[key] for h in r["to_target"] if h[key] is not None] if key else []
        if not math.isfinite(ci["mean"]):
            ax.text(i, 0, "never" if key else "n/a", rotation=90, ha="center", va="bottom",
                    fontsize=7)
            continue
        err = ([[ci["mean"] - ci["lo"]], [ci["hi"] - ci["mean"]]]
               if math.isfinite(ci["lo"]) else None)
        ax.bar([i], [ci["mean"]], yerr=err, color=col[act], capsize=3, alpha=0.85)
        ax.plot([i] * len(pts), pts, "_", color="black", ms=10)
        if key:
            ax.annotate(r["reached"], (i, ci["mean"]), fontsize=7, ha="center", va="bottom",
                        xytext=(0, 6), textcoords="offset points")
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
    ax.set_xlim(-0.6, len(order) - 0.4)  # room for a 'never' at either end
    ax.set_ylim(bottom=0)
    ax.set_ylabel(label)


def time_to_target(per_act: dict, order: list[str], target: float | None, path: Path) -> str:
    """Three panels: CPU-seconds to the target (what the rule uses), tokens to the target (the
    per-token speed) and training tokens per CPU-second (the per-step cost)."""
    col = colors(order)
    fig, axes = new_figure(ncols=3, width=3.4, height=3.6)
    _bars(axes[0][0], per_act, order, "cpu_s", col, "CPU-seconds to target")
    _bars(axes[0][1], per_act, order, "tokens", col, "training tokens to target")
    _bars(axes[0][2], per_act, order, "", col, "training tokens per CPU-second")
    where = f"{target:.3f} nats" if target is not None else "none"
    axes[0][0].set_title(f"time to target ({where})")
    axes[0][1].set_title("per token (mean, 95% CI)")
    axes[0][2].set_title("per step cost")
    return save(fig, path)


def seed_losses(per_act: dict, order: list[str], path: Path) -> str:
    """Final validation loss of each evaluation seed at the activation's best rate, with the
    range the rule's spread part uses; a diverged seed is named."""
    col = colors(order)
    fig, axes = new_figure(width=6.0, height=0.35 * len(order) + 1.4)
    ax = axes[0][0]
    y = np.arange(len(order))[::-1]
    for yi, act in zip(y, order):
        r = per_act[act]
        pts = [v for v in r["losses"] if v is not None]
        if pts:
            ax.plot(pts, [yi] * len(pts), "o", color=col[act], ms=5)
            ax.plot([min(pts), max(pts)], [yi, yi], color=col[act], lw=1)
        if len(pts) < len(r["losses"]):
            ax.annotate(f" {len(r['losses']) - len(pts)} diverged", (max(pts, default=0), yi),
                        fontsize=7)
    ax.set_yticks(y, order)
    ax.set_xlabel("final validation loss at the best rate, one dot per evaluation seed")
    ax.set_title("seed-to-seed spread")
    return save(fig, path)


def draw_all(out: Path, per_act: dict, order: list[str], target: float | None,
             baselines: dict) -> list[str]:
    """The study's figures; returns paths relative to `out`."""
    fig_dir = out / "figures"
    paths = [
        lr_curves(per_act, order, baselines, fig_dir / "lr_curves.png"),
        time_to_target(per_act, order, target, fig_dir / "time_to_target.png"),
        seed_losses(per_act, order, fig_dir / "seed_spread.png"),
    ]
    return [str(Path(p).relative_to(out)) for p in paths]

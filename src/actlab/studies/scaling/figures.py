"""Figures of study C6, drawn from the evidence (itself computed from stored runs only):
final loss against parameters per activation on log-log axes with power-law fits (the plot of
scaling-law papers), and the gap sigmoid - comparator against depth and against parameters,
with 95% CIs over seeds and the fitted slope. Filled markers: in regime; hollow: out of regime
(those enter no fit)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from actlab.analysis.figures import new_figure, save
from actlab.studies.convergence.figures import colors
from actlab.studies.scaling.evidence import SUBJECT, fit_slope


def _ok(v) -> bool:
    return v is not None and math.isfinite(v)


def loss_vs_params(ev: dict, params: dict[str, int], acts, path: Path, bar: float | None) -> str:
    """Mean final validation loss per size point against non-embedding parameters (log-log),
    with each activation's least-squares line of log10(loss) on log10(params) over the
    in-regime points' seeds."""
    col = colors(acts)
    fig, axes = new_figure(width=6.4, height=4.2)
    ax = axes[0][0]
    for act in acts:
        xs, ys, fx, ox = [], [], [], []
        for pt in ev["points"]:
            s = pt["per_act"].get(act, {})
            n = params[pt["label"]]
            if _ok(s.get("mean")):
                ax.plot([n], [s["mean"]], "o", color=col[act],
                        mfc=col[act] if pt["in_regime"] else "none", ms=6)
                xs.append(n)
                ys.append(s["mean"])
            vals = [v for v in s.get("losses", []) if _ok(v) and v > 0]
            pairs = [(math.log10(n), math.log10(v)) for v in vals]
            (fx if pt["in_regime"] else ox).extend(pairs)
        ax.plot(xs, ys, "-", color=col[act], lw=2.0 if act == SUBJECT else 1.0, alpha=0.5,
                label=act)
        # the in-regime points' fit; with fewer than two sizes in regime, a descriptive fit
        # over all points, labelled as such (the rule reads neither: it fits the gaps)
        use, note = (fx, "") if len({x for x, _ in fx}) >= 2 else (fx + ox, ", all points")
        fit = fit_slope([x for x, _ in use], [y for _, y in use])
        if _ok(fit["slope"]):
            grid = np.linspace(min(x for x, _ in use), max(x for x, _ in use), 20)
            ax.plot(10 ** grid, 10 ** (fit["intercept"] + fit["slope"] * grid), "--",
                    color=col[act], lw=1.2, label=f"{act} fit{note}: L ~ N^{fit['slope']:+.3f}")
    if bar is not None:
        ax.axhline(bar, color="grey", ls=":", lw=1, label=f"trigram baseline {bar:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("final validation loss (nats/token)")
    ax.set_title("loss vs size at a fixed tokens/parameter ratio (hollow: out of regime)")
    ax.legend(fontsize=7)
    return save(fig, path)


def gap_vs_x(ev: dict, comparators, path: Path, xlabel: str, title: str, log_x: bool) -> str:
    """Mean paired gap sigmoid - comparator per point with its 95% CI over seeds, and the
    fitted slope over the in-regime points (dashed)."""
    col = colors([SUBJECT, *comparators])
    fig, axes = new_figure(width=6.4, height=4.0)
    ax = axes[0][0]
    for i, c in enumerate(comparators):
        shift = (i - (len(comparators) - 1) / 2) * 0.04  # side by side, not on top
        for pt in ev["points"]:
            g = pt["gaps"][c]
            if not _ok(g["mean"]):
                continue
            x = 10 ** (pt["x"] + shift) if log_x else pt["x"] * (1 + shift)
            err = [[g["mean"] - g["lo"]], [g["hi"] - g["mean"]]] if _ok(g["lo"]) else None
            ax.errorbar([x], [g["mean"]], yerr=err, fmt="o", capsize=3, color=col[c],
                        mfc=col[c] if pt["in_regime"] else "none")
        fit = ev["fits"][c]
        xin = [pt["x"] for pt in ev["points"] if pt["in_regime"]]
        if _ok(fit["slope"]) and xin:
            grid = np.linspace(min(xin), max(xin), 20)
            ax.plot(10 ** grid if log_x else grid, fit["intercept"] + fit["slope"] * grid, "--",
                    color=col[c], label=f"sigmoid - {c}: slope {fit['slope']:+.3f} "
                    f"[{fit['lo']:+.3f}, {fit['hi']:+.3f}] ({fit['outcome']})")
        else:
            ax.plot([], [], "o", color=col[c], label=f"sigmoid - {c} ({fit['outcome']})")
    ax.axhline(0, color="grey", lw=0.8)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final loss gap (nats/token), mean and 95% CI")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return save(fig, path)


def draw_all(out: Path, evidence: dict, acts, comparators, bar: float | None) -> list[str]:
    """The study's figures; paths relative to `out`."""
    fig_dir = out / "figures"
    size, depth = evidence["size"], evidence["depth"]
    params = {pt["label"]: pt["params"] for pt in size["points"]}
    paths = [
        loss_vs_params(size, params, acts, fig_dir / "loss_vs_params.png", bar),
        gap_vs_x(depth, comparators, fig_dir / "gap_vs_depth.png", "blocks (fixed width and steps)",
                 "sigmoid's gap against depth (hollow: out of regime)", log_x=False),
        gap_vs_x(size, comparators, fig_dir / "gap_vs_params.png",
                 "non-embedding parameters (fixed tokens/parameter)",
                 "sigmoid's gap against size (hollow: out of regime)", log_x=True),
    ]
    return [str(Path(p).relative_to(out)) for p in paths]

"""Figures of study C1 (vanishing), from the results `run_grid` stored only: the gradient
profiles (log scale, per layer) at init and after K steps, first/last ratio vs depth,
saturation over training, the GPT's branch / residual gradient ratio, activation histograms
and loss curves. Curves are means over seeds (geometric for norms).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from actlab.analysis.figures import new_figure, save
from actlab.analysis.numbers import num
from actlab.analysis.stats import mean_ci
from actlab.studies.vanishing.evidence import reference, run_measure

COLORS = {"sigmoid": "tab:red", "sigmoid_centered": "tab:orange", "tanh": "tab:purple",
          "relu": "tab:blue", "gelu": "tab:green", "silu": "tab:cyan"}
TITLES = {"mlp": "plain MLP (no residual, no norm)", "gpt": "pre-LN GPT (residual)"}


def _ref(results: list[dict], model: str, preset: dict) -> list[dict]:
    return [r for r in reference(results, model, preset) if r.get("outcome") == "completed"]


def _acts(runs: list[dict]) -> list[str]:
    seen = {r["params"]["act"] for r in runs}
    return [a for a in COLORS if a in seen] + sorted(seen - set(COLORS))


def _geo_mean(rows: list[list[float]]) -> np.ndarray:
    """Per-layer geometric mean over runs (NaN and non-positive values skipped)."""
    arr = np.array([[num(v) for v in row] for row in rows], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a layer with no positive norm: NaN
        logs = np.where(arr > 0, np.log10(arr), np.nan)
        return 10 ** np.nanmean(logs, axis=0)


def _at(run: dict, key: str, index: int) -> list | None:
    rows = run.get(key) or []
    return rows[index] if rows else None


def grad_profiles(results, preset, model, path) -> str:
    runs = _ref(results, model, preset)
    depths = sorted({r["params"]["depth"] for r in runs})
    steps = preset[model]["steps"]
    fig, axes = new_figure(len(depths), 2, width=3.6, height=3.0)
    for col, depth in enumerate(depths):
        for row, (index, label) in enumerate(((0, "init"), (-1, f"after {steps} steps"))):
            ax = axes[row][col]
            for act in _acts(runs):
                rows = [_at(r, "w_grad", index) for r in runs
                        if r["params"]["act"] == act and r["params"]["depth"] == depth]
                rows = [x for x in rows if x]
                if rows:
                    ax.plot(range(1, depth + 1), _geo_mean(rows), color=COLORS.get(act), label=act,
                            marker="." if depth <= 8 else None)
            ax.set_yscale("log")
            ax.set_title(f"depth {depth}, {label}")
            ax.set_xlabel("layer (1 = nearest the input)")
            if col == 0:
                ax.set_ylabel("||grad W_in|| of the layer")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{TITLES[model]}: gradient norm per layer")
    return save(fig, path)


def ratio_vs_depth(results, preset, path) -> str:
    fig, axes = new_figure(2, 1, width=4.4)
    for ax, model in zip(axes[0], ("mlp", "gpt")):
        runs = _ref(results, model, preset)
        depths = sorted({r["params"]["depth"] for r in runs})
        for act in _acts(runs):
            cis = [mean_ci([run_measure(r) for r in runs
                            if r["params"]["act"] == act and r["params"]["depth"] == d]) for d in depths]
            mean = np.array([c["mean"] for c in cis])
            lo = np.array([c["lo"] if c["n"] > 1 else c["mean"] for c in cis])
            hi = np.array([c["hi"] if c["n"] > 1 else c["mean"] for c in cis])
            ax.errorbar(depths, mean, yerr=[mean - lo, hi - mean], color=COLORS.get(act), label=act,
                        marker="o", capsize=3)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_title(TITLES[model])
        ax.set_xlabel("depth (hidden layers / blocks)")
        ax.set_ylabel("log10 first/last grad ratio (mean over steps)")
    axes[0][0].legend(fontsize=7)
    return save(fig, path)


def _deepest(runs: list[dict]) -> list[dict]:
    if not runs:
        return []
    top = max(r["params"]["depth"] for r in runs)
    return [r for r in runs if r["params"]["depth"] == top]


def _over_steps(runs, act, steps_key, key, reduce) -> tuple[list, np.ndarray]:
    """(steps, mean over runs of reduce(row)) for one activation; runs share their steps."""
    mine = [r for r in runs if r["params"]["act"] == act and r.get(key)]
    if not mine:
        return [], np.array([])
    steps = mine[0][steps_key]
    vals = np.array([[reduce(row) for row in r[key]] for r in mine if r[steps_key] == steps])
    keep = ~np.isnan(vals).all(axis=0)  # the GPT's step 0 has no forward-hook numbers
    return [s for s, k in zip(steps, keep) if k], np.nanmean(vals[:, keep], axis=0)


def _mean(row) -> float:
    vals = [num(v) for v in row or []]
    return float(np.nanmean(vals)) if vals and not all(math.isnan(v) for v in vals) else math.nan


def saturation(results, preset, path) -> str:
    fig, axes = new_figure(2, 1, width=4.4)
    for ax, model in zip(axes[0], ("mlp", "gpt")):
        runs = _deepest(_ref(results, model, preset))
        for act in _acts(runs):
            steps, vals = _over_steps(runs, act, "sat_steps", "saturated", _mean)
            if len(steps):
                ax.plot(steps, vals, color=COLORS.get(act), label=act, marker="o")
        depth = runs[0]["params"]["depth"] if runs else "?"
        ax.set_title(f"{TITLES[model]}, depth {depth}")
        ax.set_xlabel("step")
        ax.set_ylabel("saturated fraction (|f'| < 0.01)")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].legend(fontsize=7)
    return save(fig, path)


def branch_ratio(results, preset, path) -> str:
    runs = _deepest(_ref(results, "gpt", preset))
    fig, axes = new_figure(2, 1, width=4.4)
    for act in _acts(runs):
        mine = [r for r in runs if r["params"]["act"] == act and r.get("branch_ratio")]
        if not mine:
            continue
        per_layer = [[_mean([row[i] for row in r["branch_ratio"]]) for i in range(len(r["layers"]))]
                     for r in mine]
        axes[0][0].plot(range(1, len(per_layer[0]) + 1), np.nanmean(np.array(per_layer), axis=0),
                        color=COLORS.get(act), label=act)
        steps, vals = _over_steps(runs, act, "grad_steps", "branch_ratio", _mean)
        axes[0][1].plot(steps, vals, color=COLORS.get(act), label=act, marker="o")
    axes[0][0].set_xlabel("block (1 = nearest the input)")
    axes[0][1].set_xlabel("step")
    for ax in axes[0]:
        ax.set_yscale("log")
        ax.set_ylabel("||grad via FFN branch|| / ||grad via identity||")
    axes[0][0].set_title("per block (mean over recorded steps)")
    axes[0][1].set_title("over training (mean over blocks)")
    axes[0][0].legend(fontsize=7)
    return save(fig, path)


def histograms(results, preset, model, path) -> str:
    runs = _deepest(_ref(results, model, preset))
    acts = _acts(runs)
    cols = min(3, max(1, len(acts)))
    fig, axes = new_figure(cols, -(-max(1, len(acts)) // cols), width=3.0, height=2.6)
    for ax, act in zip(axes.flat, acts):
        mine = [r for r in runs if r["params"]["act"] == act and r.get("hist_edges")]
        edges = np.array(mine[0]["hist_edges"]) if mine else np.linspace(-3, 3, 62)
        centres = (edges[:-1] + edges[1:]) / 2
        for which, style in (("first", "-"), ("last", "--")):
            counts = [np.array(r["hist"][which], dtype=float) for r in mine if r["hist"].get(which)]
            if counts:
                total = np.sum(counts, axis=0)
                ax.plot(centres, total / max(total.sum(), 1), style, color=COLORS.get(act),
                        label=f"{which} layer")
        ax.set_title(act)
        ax.set_xlabel("activation output")
    for ax in axes.flat[len(acts):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel("fraction of outputs")
    axes[0][0].legend(fontsize=7)
    depth = runs[0]["params"]["depth"] if runs else "?"
    fig.suptitle(f"{TITLES[model]}, depth {depth}: outputs pooled over training")
    return save(fig, path)


def losses(results, preset, path) -> str:
    fig, axes = new_figure(2, 1, width=4.4)
    for ax, model in zip(axes[0], ("mlp", "gpt")):
        runs = _deepest(_ref(results, model, preset))
        for act in _acts(runs):
            curves = [[num(h["train_loss"]) for h in r["history"]] for r in runs
                      if r["params"]["act"] == act]
            n = min(len(c) for c in curves)
            ax.plot(range(n), np.nanmean([c[:n] for c in curves], axis=0), color=COLORS.get(act),
                    label=act)
        depth = runs[0]["params"]["depth"] if runs else "?"
        ax.set_title(f"{TITLES[model]}, depth {depth}")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (nats / char)")
    axes[0][0].legend(fontsize=7)
    return save(fig, path)


def draw(results: list[dict], preset: dict, out_dir) -> list[str]:
    """Write every figure under out_dir/figures/; return their paths relative to out_dir."""
    fig_dir = Path(out_dir) / "figures"
    made = [
        grad_profiles(results, preset, "mlp", fig_dir / "grad_profile_mlp.png"),
        grad_profiles(results, preset, "gpt", fig_dir / "grad_profile_gpt.png"),
        ratio_vs_depth(results, preset, fig_dir / "ratio_vs_depth.png"),
        saturation(results, preset, fig_dir / "saturation.png"),
        branch_ratio(results, preset, fig_dir / "branch_ratio.png"),
        histograms(results, preset, "mlp", fig_dir / "histograms_mlp.png"),
        histograms(results, preset, "gpt", fig_dir / "histograms_gpt.png"),
        losses(results, preset, fig_dir / "loss.png"),
    ]
    return [str(Path(p).relative_to(out_dir)) for p in made]

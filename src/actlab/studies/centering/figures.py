"""Figures of study C2 (centering), drawn only from what run_grid stored.

mean activation per layer, sign coherence per layer, loss curves with 95% CI bands, and the
path straightness of the consuming weights, each with one panel (or group) per setting and
one line (or bar) per activation of `acts`, in that order.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from actlab.analysis.figures import new_figure, save
from actlab.analysis.stats import mean_band

ACT_COLORS = {"sigmoid": "tab:red", "sigmoid_centered": "tab:blue", "tanh": "tab:green"}
ACT_LABELS = {"sigmoid": "sigmoid", "sigmoid_centered": "sigmoid - 1/2", "tanh": "tanh"}


def _eval_runs(results: list[dict], setting: str, act: str) -> list[dict]:
    model, optimizer = setting.split("/")
    return [r for r in results if r["params"]["phase"] == "eval" and r["params"]["model"] == model
            and r["params"]["optimizer"] == optimizer and r["params"]["act"] == act]


def _per_layer(results, settings, acts, key: str, ylabel: str, title: str, path: Path) -> str:
    fig, axes = new_figure(ncols=len(settings), width=3.6, height=3.0)
    for ax, setting in zip(axes[0], settings):
        for act in acts:
            rows = [[v if v is not None else np.nan for v in r.get(key) or []]
                    for r in _eval_runs(results, setting, act)]
            rows = [r for r in rows if r]
            if not rows:
                continue
            width = min(len(r) for r in rows)
            mean, half = mean_band(np.asarray([r[:width] for r in rows], dtype=float))
            x = np.arange(width)
            ax.errorbar(x, mean, yerr=half, marker="o", ms=3, capsize=2,
                        color=ACT_COLORS[act], label=ACT_LABELS[act])
        ax.set_title(setting)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer (depth order)")
        ax.set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    return save(fig, path)


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    return np.convolve(y, np.ones(window) / window, mode="valid")


def loss_curves(results, settings, acts, path: Path) -> str:
    fig, axes = new_figure(ncols=len(settings), width=3.6, height=3.0)
    for ax, setting in zip(axes[0], settings):
        for act in acts:
            curves = [np.asarray([h["train_loss"] for h in r["history"]], dtype=float)
                      for r in _eval_runs(results, setting, act)]
            curves = [c for c in curves if len(c)]
            if not curves:
                continue
            steps = min(len(c) for c in curves)
            window = max(1, steps // 25)
            rows = np.asarray([_smooth(c[:steps], window) for c in curves])
            mean, half = mean_band(rows)
            x = np.arange(rows.shape[1]) + (window - 1)  # a window ends at its last step
            color = ACT_COLORS[act]
            ax.plot(x, mean, color=color, label=ACT_LABELS[act], lw=1.2)
            ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.2, lw=0)
        ax.set_title(setting)
        ax.set_xlabel("step")
        ax.set_ylabel("train loss (moving average)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Training loss, mean over seeds with 95% CI band")
    return save(fig, path)


def straightness_bars(settings: dict, acts, path: Path) -> str:
    keys = (("straightness", "consuming weights"), ("straightness_all", "all parameters"))
    fig, axes = new_figure(ncols=2, width=4.6, height=3.2)
    width = 0.8 / len(acts)
    for ax, (key, label) in zip(axes[0], keys):
        for i, act in enumerate(acts):
            cis = [settings[s][key][act] for s in settings]
            mean = np.asarray([_nan(c["mean"]) for c in cis])
            err = np.asarray([[_nan(c["mean"]) - _nan(c["lo"]) for c in cis],
                              [_nan(c["hi"]) - _nan(c["mean"]) for c in cis]])
            x = np.arange(len(cis)) + (i - (len(acts) - 1) / 2) * width
            ax.bar(x, mean, width, yerr=np.nan_to_num(err), capsize=2,
                   color=ACT_COLORS[act], label=ACT_LABELS[act])
        ax.set_xticks(np.arange(len(settings)), list(settings), fontsize=7)
        ax.set_ylabel("||θ_T - θ_0|| / path length")
        ax.set_title(f"Path straightness, {label}")
    axes[0][0].legend(fontsize=7)
    return save(fig, path)


def _nan(x) -> float:
    return float(x) if x is not None else math.nan


def draw_all(results: list[dict], settings: dict, out_dir, acts) -> list[str]:
    """Write the four PNGs under out_dir/figures; return their paths relative to out_dir."""
    out = Path(out_dir)
    fig_dir = out / "figures"
    paths = [
        _per_layer(results, settings, acts, "act_mean", "mean activation output",
                   "Mean activation per layer (95% CI over seeds)",
                   fig_dir / "centering_act_mean.png"),
        _per_layer(results, settings, acts, "coherence", "sign coherence of gradient rows",
                   "Per-example gradient sign coherence of the consuming Linear",
                   fig_dir / "centering_coherence.png"),
        loss_curves(results, settings, acts, fig_dir / "centering_loss.png"),
        straightness_bars(settings, acts, fig_dir / "centering_straightness.png"),
    ]
    return [str(Path(p).relative_to(out)) for p in paths]

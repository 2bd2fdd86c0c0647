"""Figures of study C5 (gates), drawn only from what run_grid stored and the evidence built
from it: final loss per variant by family, paired differences against the tolerance, loss
curves with 95% CI bands, and the attention-row sums of sigmoid attention with and without
bias. `families` is {family: (title, variants)}, the study's FAMILIES.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from actlab.analysis.figures import new_figure, save
from actlab.analysis.numbers import num
from actlab.analysis.stats import mean_band

COLORS = {
    "gelu": "black", "sigmoid": "tab:red", "glu": "tab:orange", "reglu": "tab:green",
    "geglu": "tab:blue", "swiglu": "tab:purple", "attn_sigmoid": "tab:orange",
    "attn_sigmoid_nobias": "tab:red", "gelu_wide": "tab:gray", "out_gate": "tab:orange",
    "moe_softmax": "tab:blue", "moe_sigmoid": "tab:orange",
}
# the reference each family's comparisons use (param-matched for the output gate)
FAMILY_REF = {"output_gate": "gelu_wide", "moe": "moe_softmax"}


def _label(ev: dict, variant: str, family: str) -> str:
    # The GELU/softmax baseline is the reference of every family; name it by what varies.
    if variant == "gelu" and family == "moe":
        return "dense GELU FFN (baseline)"
    if variant == "gelu" and family != "ffn":
        return "softmax (baseline)"
    return ev["variants"][variant]["label"]


def final_loss(ev: dict, families: dict, path: Path) -> str:
    fig, axes = new_figure(ncols=len(families), width=4.4, height=3.0)
    for ax, (family, (title, variants)) in zip(axes[0], families.items()):
        # the reference the rule uses in this family (param-matched for the output gate)
        ref = ev["variants"][FAMILY_REF.get(family, "gelu")]["final_loss"]
        ax.axvspan(num(ref["mean"]), num(ref["mean"]) + ev["tolerance"], color="0.85")
        for y, v in enumerate(variants):
            fl = ev["variants"][v]["final_loss"]
            m = num(fl["mean"])
            lo, hi = num(fl["lo"]), num(fl["hi"])
            err = [[m - lo], [hi - m]] if math.isfinite(lo) else None
            ax.errorbar([m], [y], xerr=err, fmt="o", color=COLORS[v], capsize=3)
            n_div = ev["variants"][v]["diverged"]
            if n_div:
                ax.annotate(f"{n_div} diverged", (m, y), xytext=(4, 4), textcoords="offset points",
                            fontsize=7, color="tab:red")
        ax.set_yticks(range(len(variants)))
        ax.set_yticklabels([_label(ev, v, family) for v in variants], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlabel("final val loss (nats), mean ± 95% CI")
    fig.suptitle(f"grey band: the rule's reference mean to mean + tolerance ({ev['tolerance']} "
                 "nats)", fontsize=8)
    return save(fig, path)


def paired_differences(ev: dict, path: Path) -> str:
    comps = ev["comparisons"]
    names = list(comps)
    fig, axes = new_figure(width=6.5, height=0.32 * len(names) + 1.2)
    ax = axes[0][0]
    ax.axvline(0.0, color="black", lw=0.8)
    ax.axvline(ev["tolerance"], color="tab:red", ls="--", lw=0.8, label="tolerance")
    for y, name in enumerate(names):
        c = comps[name]
        d, lo, hi = num(c["diff"]), num(c["lo"]), num(c["hi"])
        color = "tab:blue" if c["in_rule"] else "0.55"
        err = [[d - lo], [hi - d]] if math.isfinite(lo) else None
        ax.errorbar([d], [y], xerr=err, fmt="o", color=color, capsize=3)
        ax.annotate(c["status"], (d, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([f"{comps[n]['variant']} - {comps[n]['reference']}" for n in names],
                       fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("paired final val loss difference (nats), 95% CI; blue = read by the rule")
    ax.legend(fontsize=7)
    return save(fig, path)


def loss_curves(results: list[dict], ev: dict, families: dict, path: Path) -> str:
    fig, axes = new_figure(ncols=len(families), width=3.8, height=3.0)
    for ax, (family, (title, variants)) in zip(axes[0], families.items()):
        for v in variants:
            curves = {}
            for r in results:
                p = r["params"]
                if p["stage"] == "eval" and p["variant"] == v and r.get("outcome") == "completed":
                    curves[p["seed"]] = {h["step"]: h["val_loss"] for h in r["history"]
                                         if "val_loss" in h}
            if not curves:
                continue
            steps = sorted(set.intersection(*(set(c) for c in curves.values())))
            rows = np.asarray([[c[s] for s in steps] for c in curves.values()], dtype=float)
            mean, half = mean_band(rows)
            x = np.asarray(steps) + 1
            ax.plot(x, mean, color=COLORS[v], label=_label(ev, v, family), lw=1.2)
            ax.fill_between(x, mean - half, mean + half, color=COLORS[v], alpha=0.2, lw=0)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel("val loss (nats/char)")
        ax.legend(fontsize=6)
    return save(fig, path)


def attention_row_sums(ev: dict, path: Path) -> str:
    fig, axes = new_figure(width=5.0, height=3.2)
    ax = axes[0][0]
    ax.axhline(1.0, color="black", lw=0.8, label="softmax (always 1)")
    for v, color in (("attn_sigmoid", "tab:orange"), ("attn_sigmoid_nobias", "tab:red")):
        rs = ev["variants"][v].get("row_sum") or {}
        for when, style in (("init_by_pos", ":"), ("final_by_pos", "-")):
            y = rs.get(when) or []
            if y:
                ax.plot(np.arange(1, len(y) + 1), y, style, color=color,
                        label=f"{ev['variants'][v]['label']}, {when.split('_')[0]}")
    ax.set_yscale("log")
    ax.set_xlabel("query position n (keys attended)")
    ax.set_ylabel("mean attention-row sum")
    ax.legend(fontsize=7)
    return save(fig, path)


def draw_all(results: list[dict], ev: dict, out_dir, families: dict) -> list[str]:
    """Write every figure under out_dir/figures; return paths relative to out_dir."""
    fig_dir = Path(out_dir) / "figures"
    made = [
        final_loss(ev, families, fig_dir / "final_loss.png"),
        paired_differences(ev, fig_dir / "paired_differences.png"),
        loss_curves(results, ev, families, fig_dir / "loss_curves.png"),
        attention_row_sums(ev, fig_dir / "attention_row_sums.png"),
    ]
    return [str(Path(p).relative_to(out_dir)) for p in made]

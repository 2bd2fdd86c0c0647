"""Figure helpers: headless matplotlib, one style, PNGs written where the study says."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402

from actlab.files.atomic import atomic_path  # noqa: E402

STYLE = {
    "figure.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 9,
}


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.4):
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes


def save(fig, path: str | Path) -> str:
    """Write a PNG (parents created) and close the figure; returns the path as a string.

    The PNG goes to a temporary name and is renamed into place (actlab.files.atomic), so a
    kill or a full disk leaves the previous figure or none; the format is named because the
    temporary name does not end in .png. The figure is closed even when the write fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with plt.rc_context(STYLE):
            fig.tight_layout()
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return str(path)

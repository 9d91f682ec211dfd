"""The LM track's figure: held-out curves per method (mean and 95% band over seeds)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from lakelab.stats import ci95

PANELS = (
    ("pretrain", "success", "base model: held-out success"),
    ("align", "success", "held-out success (greedy plan, real env)"),
    ("align", "shortest", "held-out shortest-plan rate"),
    ("align", "token_kl", "token KL(pi* || model) on the optimal plan"),
    ("align", "logp_chosen", "log p(optimal plan)"),
    ("align", "logp_rejected", "log p(rejected plan)"),
)


def _band(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per step: mean and 95% half-width over seeds of ``key``."""
    stats = df.groupby("step")[key].apply(lambda v: pd.Series(ci95(v.to_numpy()), ["m", "h"]))
    return stats.unstack()


def lm_figure(metrics: pd.DataFrame, title: str) -> Figure:
    """Curves of ``metrics`` (``lakelab.lm.runs`` layout): the base model's pre-training, then
    every method's alignment from that base (step 0 is the base model)."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    colors = plt.get_cmap("tab10")
    for ax, (stage, key, label) in zip(axes.flat, PANELS, strict=True):
        part = metrics[metrics["stage"] == stage]
        for c, (method, df) in enumerate(part.groupby("method", sort=False)):
            band = _band(df, key)
            color = "black" if method == "base" else colors(c)
            ax.plot(band.index, band["m"], label=method, color=color)
            ax.fill_between(
                band.index, band["m"] - band["h"], band["m"] + band["h"], color=color, alpha=0.2
            )
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("pre-training step" if stage == "pretrain" else "alignment step")
    axes[0, 1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

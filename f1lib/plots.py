"""One function per figure of the book (matplotlib + seaborn)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .stats import mean_ci

VARIANT_COLORS = {"paper": "#d95f02", "stable": "#1b9e77"}


def style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)


def band(ax, frame: pd.DataFrame, x: str, y: str, label: str, color: str, **line) -> None:
    """Mean over seeds against `x`, with its 95% interval shaded."""
    stats = frame.groupby(x)[y].apply(lambda v: mean_ci(v.to_numpy()))
    mean, low, high = (np.array(column) for column in zip(*stats))
    steps = stats.index.to_numpy()
    ax.plot(steps, mean, color=color, label=label, **line)
    ax.fill_between(steps, low, high, color=color, alpha=0.25, linewidth=0)


def lp_bound_figure(history: pd.DataFrame, reference: pd.DataFrame):
    """Per problem: the learned scorer's F1 bound, its constraint violation and
    its true F1 over outer loops, for each variant, against the exact LP."""
    style()
    problems = reference["problem"].tolist()
    fig, axes = plt.subplots(len(problems), 3, figsize=(11, 2.3 * len(problems)),
                             sharex=True, squeeze=False)
    runs = history[history["outer"] > 0]
    for row, problem in zip(axes, problems):
        ref = reference.set_index("problem").loc[problem]
        for variant, frame in runs[runs["problem"] == problem].groupby("variant"):
            color = VARIANT_COLORS.get(variant, "k")
            band(row[0], frame, "outer", "exact_f1_bound", variant, color)
            band(row[1], frame, "outer", "violation", variant, color)
            band(row[2], frame, "outer", "true_f1", variant, color)
        row[0].axhline(ref["lp_bound_bias"], color="k", ls="--", lw=1, label="LP with bias")
        row[0].axhline(ref["lp_bound_no_bias"], color="k", ls=":", lw=1, label="LP (5)-(9), no bias")
        row[2].axhline(ref["lp_true_f1_bias"], color="0.5", ls="--", lw=1,
                       label="true F1 of the LP's scorer")
        row[0].set_ylim(-0.02, 1.02)
        row[2].set_ylim(-0.02, 1.02)
        row[1].set_yscale("symlog", linthresh=1e-3)
        row[1].set_ylim(bottom=0)  # a violation is >= 0; the interval of a mean may not be
        row[0].set_ylabel(problem.replace(", ", "\n"), fontsize=8)
    for ax, title in zip(axes[0], ("hinge F1 bound of the scorer", "constraint violation",
                                   "true F1 of the scorer")):
        ax.set_title(title)
    for ax in axes[-1]:
        ax.set_xlabel("outer loop")
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False,
               bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig

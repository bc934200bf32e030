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


def band(ax, frame: pd.DataFrame, x: str, y: str, label: str, color: str,
         score: bool = False, **line) -> None:
    """Mean over seeds against `x`, with its 95% interval shaded; for a `score` (in [0, 1])
    the interval is cut at that range, which a mean of scores cannot leave."""
    stats = frame.groupby(x)[y].apply(lambda v: mean_ci(v.to_numpy()))
    mean, low, high = (np.array(column) for column in zip(*stats))
    if score:
        low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
    steps = stats.index.to_numpy()
    ax.plot(steps, mean, color=color, label=label, **line)
    ax.fill_between(steps, low, high, color=color, alpha=0.25, linewidth=0)


def cap_at_score_range(ax, axis: str = "y", margin: float = 0.02) -> None:
    """Keep an axis of scores in [0, 1] (accuracy, F1, IoU) inside that range, plus a margin.

    Two or three seeds' t-intervals reach past it: the mean of scores in [0, 1] cannot,
    so the part of an interval beyond is cut at the axis's edge rather than stretching the
    axis to impossible values."""
    get, set_ = (ax.get_xlim, ax.set_xlim) if axis == "x" else (ax.get_ylim, ax.set_ylim)
    low, high = get()
    set_(max(low, -margin), min(high, 1 + margin))


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
        row[0].axhline(ref["lp_bound_no_bias"], color="k", ls=":", lw=1,
                       label="LP (5)-(9), no bias")
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


def _method_style(method: str, lr_scale: float) -> dict:
    # the baseline thin and on top, so that a variant that changes nothing does not hide it
    if method == "baseline":
        return {"color": "0.1" if lr_scale == 1 else "0.55", "ls": "-" if lr_scale == 1 else "--",
                "lw": 1.2, "zorder": 5}
    return {"color": VARIANT_COLORS.get(method, "k"), "ls": "-", "lw": 2.4, "zorder": 3}


def mnist_figure(history: pd.DataFrame, figure_beta: float):
    """Figure 6: test accuracy and the big-small gap over outer loops (the
    baselines and both variants at `figure_beta`), and final accuracy and
    head F1 against beta. Means over the finished runs, with 95% bands; a setting whose
    runs all diverged is marked by an x at the foot of the lower panels."""
    style()
    runs = history[(history["status"] == "finished") & (history["outer"] > 0)]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    curves = runs[(runs["method"] == "baseline") | (runs["beta"] == figure_beta)]
    for label, frame in curves.groupby("run", sort=False):
        look = _method_style(frame["method"].iloc[0], frame["lr_scale"].iloc[0])
        color = look.pop("color")
        band(axes[0, 0], frame, "outer", "acc", label, color, **look)
        band(axes[0, 1], frame, "outer", "gap", label, color, **look)
    axes[0, 0].set(title=f"Test accuracy (β = {figure_beta:g} for F1)", xlabel="outer loop",
                   ylabel="accuracy")
    axes[0, 1].set(title="Accuracy on big minus on small digits", xlabel="outer loop",
                   ylabel="accuracy gap")
    axes[0, 0].legend(fontsize=8, loc="lower right")

    last = runs[runs["outer"] == runs.groupby(["run", "seed"])["outer"].transform("max")]
    per_run = history.groupby(["method", "beta", "seed"])["status"].first()
    diverged = (per_run != "finished").groupby(["method", "beta"]).agg(["sum", "size"])
    for ax, column, title in ((axes[1, 0], "acc", "Final test accuracy against β"),
                              (axes[1, 1], "head_f1", "Final F1 of the big/small head (test)")):
        for (method, scale), frame in last.groupby(["method", "lr_scale"], sort=False):
            look = _method_style(method, scale)
            if method == "baseline":
                mean, low, high = mean_ci(frame[column].to_numpy())
                name = "baseline" if scale == 1 else f"baseline, lr x {scale:g}"
                ax.axhline(mean, color=look["color"], ls=look["ls"], lw=1, label=name)
                if np.isfinite(low):
                    ax.axhspan(low, high, color=look["color"], alpha=0.12, lw=0)
                continue
            stats = frame.groupby("beta")[column].apply(lambda v: mean_ci(v.to_numpy()))
            betas = stats.index.to_numpy()
            mean, low, high = (np.array(c) for c in zip(*stats))
            err = np.vstack([mean - low, high - mean])
            ax.errorbar(betas, mean, yerr=np.where(np.isfinite(err), err, 0), marker="o",
                        capsize=3, color=look["color"], label=method)
            for beta, value in zip(betas, mean):
                lost, total = diverged.loc[(method, beta)]
                if lost:
                    ax.annotate(f"{lost}/{total} diverged", (beta, value), fontsize=7,
                                xytext=(4, -10), textcoords="offset points", color=look["color"])
        # where every run of a setting diverged there is no mean to plot: an x at the foot of
        # the axis marks the setting, so that it does not silently drop out of the figure
        for (method, beta), (lost, total) in diverged.iterrows():
            if method == "baseline" or lost < total:
                continue
            color = _method_style(method, 1)["color"]
            foot = ax.get_xaxis_transform()  # x in data, y in axes fractions
            ax.plot([beta], [0.04], marker="x", ms=8, mew=2, ls="none", color=color,
                    transform=foot, clip_on=False)
            ax.annotate(f"{lost}/{total} diverged", (beta, 0.04), xycoords=foot, fontsize=7,
                        xytext=(-10, 7), textcoords="offset points", color=color)
        ax.set_xscale("log")
        ax.set(title=title, xlabel="β")
        cap_at_score_range(ax)
    axes[1, 0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def smnist_samples(images, digits, big, per_row: int = 10):
    """The paper's Figure 1: one digit of each class, big (top) and small (bottom)."""
    style()
    fig, axes = plt.subplots(2, per_row, figsize=(1.1 * per_row, 2.5))
    for column, digit in enumerate(range(per_row)):
        for row, want_big in enumerate((True, False)):
            pick = ((digits == digit) & (big == want_big)).nonzero()
            ax = axes[row, column]
            ax.axis("off")
            if len(pick):
                ax.imshow(images[int(pick[0])].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        axes[0, column].set_title(str(digit), fontsize=9)
    axes[0, 0].text(-8, 32, "big", rotation=90, va="center", ha="right", fontsize=9)
    axes[1, 0].text(-8, 32, "small", rotation=90, va="center", ha="right", fontsize=9)
    fig.tight_layout()
    return fig


def sky_histogram_figure(fractions: dict, threshold: float, reference: tuple[int, ...],
                         reference_name: str):
    """Figure 7: each source's share of images per tenth of sky fraction, beside the
    `reference` histogram's (counts per tenth), and the big/small threshold."""
    style()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    sources = {reference_name: np.repeat((np.arange(10) + 0.5) / 10, reference)}
    sources.update({name: np.asarray(values) for name, values in fractions.items()})
    width = 0.08 / len(sources)  # the bars of one tenth side by side
    colors = ["0.35", *sns.color_palette("colorblind", len(fractions))]
    for k, ((name, values), color) in enumerate(zip(sources.items(), colors)):
        counts, _ = np.histogram(values, bins=10, range=(0, 1))
        share = (values >= threshold).mean()
        centres = (np.arange(10) + 0.5) / 10 + (k - (len(sources) - 1) / 2) * width
        ax.bar(centres, counts / len(values), width=width, color=color,
               label=f"{name} (n = {len(values):,}; {100 * share:.1f}% big)")
    ax.axvline(threshold, color="crimson", ls="--", lw=1.2)
    top = ax.get_ylim()[1]
    ax.text(threshold - 0.01, 0.97 * top, "small", ha="right", va="top", color="crimson")
    ax.text(threshold + 0.01, 0.97 * top, "big", ha="left", va="top", color="crimson")
    ax.set(xlabel="fraction of sky pixels in the image", ylabel="share of images", xlim=(0, 1))
    ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1, 0.88))
    fig.tight_layout()
    return fig


def fraction_label(fraction, big) -> str:
    """How the sample figures label a sky image: its sky fraction, and big or small."""
    return f"{float(fraction):.2f} ({'big' if big else 'small'})"


def sky_samples_figure(images, masks, fractions, threshold: float, columns: int = 8):
    """Sample images above, the same with the sky mask tinted below, titled by fraction."""
    style()
    n = min(len(images), columns)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 3.3), squeeze=False)
    for k in range(n):
        picture = images[k].permute(1, 2, 0).cpu().numpy()
        overlay = picture.astype(float) / 255
        overlay[masks[k].cpu().numpy()] = 0.5 * overlay[masks[k].cpu().numpy()] + 0.5 * np.array(
            [1.0, 0.0, 0.6])
        axes[0, k].imshow(picture)
        axes[1, k].imshow(overlay)
        axes[0, k].set_title(fraction_label(fractions[k], fractions[k] >= threshold), fontsize=8)
        for ax in axes[:, k]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def _points_and_interval(ax, values, y: float, color: str, marker: str, clip=None) -> None:
    """Each seed's value as a dot on row `y`, the mean and its 95% interval as a bar."""
    values = np.asarray(values, dtype=float)
    ax.scatter(values, np.full(len(values), y + 0.12), s=12, color=color, alpha=0.6,
               linewidths=0)
    mean, low, high = mean_ci(values)
    if clip is not None:
        low, high = np.clip([low, high], *clip)
    err = [[mean - low], [high - mean]] if np.isfinite([low, high]).all() else None
    ax.errorbar([mean], [y], xerr=err, fmt=marker, color=color, capsize=3)


def segmentation_figure(history: pd.DataFrame, claimed: float):
    """Figure 8: each method's final mean IoU and thresholded IoU (seeds as dots, means with
    95% intervals cut at [0, 1]); each F1 run's mean IoU minus its seed's baseline's, in
    points, against the claimed gain; and mean IoU against the outer loop."""
    from .study import final_rows

    style()
    fig, (left, middle, right) = plt.subplots(
        1, 3, figsize=(14, 4.2), gridspec_kw={"width_ratios": [1, 0.9, 1.1]})
    final = final_rows(history)
    labels = final["run"].drop_duplicates().tolist()
    colors = sns.color_palette("colorblind", 2)
    metrics = (("miou", "mean IoU (standard)"), ("thresholded_iou", "thresholded IoU (successor)"))
    for y, label in enumerate(labels):
        rows = final[final["run"] == label]
        for k, (column, _) in enumerate(metrics):
            _points_and_interval(left, rows[column], y + (k - 0.5) * 0.3, colors[k],
                                 "o" if k == 0 else "s", clip=(0, 1))
    for k, (_, name) in enumerate(metrics):
        left.errorbar([], [], fmt="o" if k == 0 else "s", color=colors[k], label=name)
    left.set_yticks(range(len(labels)), labels)
    left.invert_yaxis()
    left.set(xlabel="final score on the test images (dots: seeds)", title="Per method")
    cap_at_score_range(left, "x", margin=0.005)
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1,
                frameon=False)

    last = final.set_index(["run", "seed"])["miou"]
    f1_labels = [label for label in labels if label != "baseline"]
    has_baseline = "baseline" in last.index.get_level_values(0)
    for y, label in enumerate(f1_labels if has_baseline else []):
        both = last.loc[label].index.intersection(last.loc["baseline"].index)
        diff = 100 * (last.loc[label].loc[both] - last.loc["baseline"].loc[both])
        method = final[final["run"] == label]["method"].iloc[0]
        _points_and_interval(middle, diff, y, VARIANT_COLORS.get(method, "k"), "o")
    middle.axvline(0, color="0.3", lw=1)
    middle.axvline(100 * claimed, color="crimson", ls="--", lw=1.2)
    middle.text(100 * claimed, -0.45, f" claimed +{100 * claimed:g}", color="crimson",
                fontsize=8, va="top")
    middle.set_yticks(range(len(f1_labels)), f1_labels)
    middle.set_ylim(len(f1_labels) - 0.5, -0.7)
    middle.set(xlabel="mean IoU minus the same seed's baseline (points)",
               title="Against the baseline, seed by seed")

    runs = history[(history["status"] == "finished") & (history["outer"] > 0)]
    for label, frame in runs.groupby("run", sort=False):
        look = _method_style(frame["method"].iloc[0], frame["lr_scale"].iloc[0])
        color = look.pop("color")
        band(right, frame, "outer", "miou", label, color, score=True, **look)
    right.set(xlabel="outer loop", ylabel="mean IoU", title="Mean IoU on the test images")
    means = runs.groupby(["run", "outer"])["miou"].mean()
    if len(means):
        right.set_ylim(max(0.0, means.min() - 0.05), 1.005)
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def segmentation_samples_figure(images, truth, predictions: dict, row_labels=None):
    """The same test images for every method: image, true sky, each method's sky; under
    each image its row's label (`row_labels`, optional: `fraction_label`)."""
    style()
    n = len(images)
    columns = 2 + len(predictions)
    fig, axes = plt.subplots(n, columns, figsize=(1.9 * columns, 1.5 * n + 0.2 * bool(row_labels)),
                             squeeze=False)
    titles = ["image", "true sky", *predictions]
    for row in range(n):
        panels = [images[row].permute(1, 2, 0).cpu().numpy(), truth[row].cpu().numpy(),
                  *(masks[row].cpu().numpy() for masks in predictions.values())]
        for ax, panel in zip(axes[row], panels):
            ax.imshow(panel, cmap=None if panel.ndim == 3 else "Blues", vmin=0, vmax=1)
            ax.axis("off")
        if row_labels:
            axes[row, 0].text(0.5, -0.03, row_labels[row], transform=axes[row, 0].transAxes,
                              ha="center", va="top", fontsize=7)
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig

"""The sky chapters' claims: what Figures 7 and 8 assert, what was measured, and where.

Verdicts on the procedural scenes are verdicts on the proxy, and say so ("on the procedural
proxy: ..."); COCO-Stuff's are given apart. A claim of a gain is decided only where it can
be: the baseline must leave room for the gain, and the interval of the paired difference
must be narrow enough to tell the claimed gain from none (`DECISIVE_HALF_WIDTH`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .data.sky_common import COCO_SKY_HISTOGRAM, COCO_STUFF_TRAIN, coco_histogram_distance
from .ledger import claim, combined_verdict, improvement_verdict
from .stats import format_ci
from .study import Run, points_text

PAPER_GAIN = 0.04  # the paper's "+4%" of mean IoU, read as points
SUCCESSOR_GAIN = 0.800 - 0.776  # the successor's thresholded IoU, F1 against its baseline
# an interval of the paired mean-IoU difference at most this wide on each side tells the
# paper's +4 points from 0 (their gap is 2.7 half-widths)
DECISIVE_HALF_WIDTH = 0.015
NOT_RUN_ON_COCO = "on COCO-Stuff: not run here"


def sampling_distance(n: int, level: float = 0.95, draws: int = 10_000, seed: int = 0) -> float:
    """The `level` quantile of the L1 distance between COCO-Stuff's ten-bin histogram and
    that of `n` images drawn from it: how far a perfect imitation of n images may still lie."""
    shares = np.asarray(COCO_SKY_HISTOGRAM, dtype=np.float64)
    shares /= shares.sum()
    counts = np.random.default_rng(seed).multinomial(n, shares, size=draws)
    return float(np.quantile(np.abs(counts / n - shares).sum(axis=1), level))


def score_text(row, column: str, digits: int = 4) -> str:
    """A `summarize` row's score as "mean [low, high]", the interval cut at [0, 1], the
    range of a score (a t-interval over a few seeds can reach past it; the mean cannot)."""
    low = max(row[f"{column}_low"], 0.0)
    high = min(row[f"{column}_high"], 1.0)
    return format_ci(row[column], low, high, digits)


def half_width(row) -> float:
    """Half the width of a `paired_differences` row's interval (NaN without one)."""
    return (row["high"] - row["low"]) / 2


def _gain_verdict(rows: pd.DataFrame, claimed: float, needed: float | None,
                  headroom: float) -> tuple[str, str]:
    """(verdict, why it is undecided, or "") for a claimed gain over the variants' rows."""
    if headroom < claimed:
        return "not testable here", (f"the baseline leaves {100 * headroom:.2f} points, less "
                                     f"than the {100 * claimed:.1f} claimed")
    widths = [half_width(r) for _, r in rows.iterrows()]
    if needed is not None and not all(w <= needed for w in widths):
        widest = max((w for w in widths if math.isfinite(w)), default=math.nan)
        return "not testable here", (f"a 95% interval's half-width of {100 * widest:.2f} points "
                                     f"is over the {100 * needed:.1f} that tell "
                                     f"+{100 * claimed:.0f} from 0")
    verdicts = [improvement_verdict(r["low"], r["high"], claimed) for _, r in rows.iterrows()]
    return combined_verdict(verdicts), ""


def segmentation_claims(paired: dict, summary: pd.DataFrame, variants: list[str], beta: float,
                        synthetic: bool, setting: str) -> list[dict]:
    """Figure 8's claim (+4 points of mean IoU) and the successor's (thresholded IoU), from
    `paired` ({"miou": ..., "thresholded_iou": ...}, f1lib.study.paired_differences) and
    `summary` (f1lib.study.summarize)."""
    labels = [Run(v, beta, 0).label for v in variants]
    base = summary.set_index("run").loc["baseline"]
    scope = "the procedural proxy" if synthetic else "COCO-Stuff"
    elsewhere = NOT_RUN_ON_COCO if synthetic else None
    out = []
    for key, column, claimed, needed, title, paper in (
            ("sky_fig8", "miou", PAPER_GAIN, DECISIVE_HALF_WIDTH,
             f"F1 normalization improves the mean IoU of the sky masks (Fig. 8), β = {beta:g}",
             "improves the mean IoU of output masks by 4%"),
            ("sky_successor", "thresholded_iou", SUCCESSOR_GAIN, None,
             "Sky thresholded IoU with and without the F1 term (successor, AAAI 2020)",
             "80% with F1 vs 77.6% baseline (its baseline trained with Adam)")):
        rows = paired[column].set_index("method").reindex(labels).dropna(how="all")
        verdict, why = _gain_verdict(rows, claimed, needed, 1 - base[column])
        measured = "; ".join(f"{label}: {points_text(row)}" for label, row in rows.iterrows())
        measured += f" against the baseline's {score_text(base, column)}"
        if why:
            measured += f" ({why})"
        out.append(claim(key, title, paper, measured, setting, verdict, scope, elsewhere))
    return out


def histogram_claim(fractions: dict, threshold: float, setting: str,
                    coco_name: str | None) -> dict:
    """Figure 7's claim: the sky fraction's histogram and the big/small threshold.

    `fractions` maps a source to its sky fractions ("procedural", and `coco_name` when
    COCO-Stuff's annotations were read). Decided on COCO-Stuff's annotations alone: the
    procedural scenes are drawn to follow COCO-Stuff's histogram, so they cannot test it.
    """
    procedural = fractions["procedural"]
    measured = (f"procedural (synthetic, drawn to follow COCO-Stuff's histogram): "
                f"{100 * (procedural >= threshold).mean():.1f}% big, L1 distance "
                f"{coco_histogram_distance(procedural):.3f} to COCO-Stuff's histogram (95% of "
                f"samples of as many images from it lie within "
                f"{sampling_distance(len(procedural)):.3f})")
    title = f"Sky fraction ≥ {threshold:g} makes an image big (Fig. 7)"
    published = COCO_STUFF_TRAIN["big_share"]
    paper = (f"threshold read off the histogram; COCO-Stuff train (both sky categories): "
             f"{100 * published:.1f}% big, median {COCO_STUFF_TRAIN['quantiles'][0.5]}")
    if coco_name is None:
        return claim("sky_fig7", title, paper, measured, setting, "not testable here",
                     "COCO-Stuff",
                     "its annotations were not read here")
    share = (fractions[coco_name] >= threshold).mean()
    measured += f"; {coco_name}: {100 * share:.1f}% big"
    # the published share is rounded to 0.1 point: agreement within half a point holds
    verdict = "holds" if abs(share - published) < 0.005 else "does not hold"
    return claim("sky_fig7", title, paper, measured, setting, verdict, "COCO-Stuff")

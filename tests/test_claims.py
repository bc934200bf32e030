"""The LP and MNIST chapters' claims from hand-made summary tables."""

import pandas as pd

from f1lib.claims import MNIST_GAIN, lp_claims, mnist_claims, mnist_text


def mnist_tables(low: float, high: float):
    summary = pd.DataFrame([{"run": "baseline", "acc": 0.95, "acc_low": 0.94, "acc_high": 0.96}])
    paired = pd.DataFrame([{"method": "paper, β=0.001", "seeds": 3, "difference": (low + high) / 2,
                            "low": low, "high": high, "verdict": "no measurable difference"}])
    return summary, paired


def test_mnist_verdicts_follow_the_interval_against_the_successors_gain():
    assert abs(MNIST_GAIN - 0.015) < 1e-12
    for (low, high), verdict in [((0.001, 0.02), "holds"), ((-0.01, 0.01), "does not hold"),
                                 ((-0.05, 0.05), "not testable here")]:
        claims = mnist_claims(*mnist_tables(low, high), ["paper"], 1e-3, "s")
        assert [c["outcome"] for c in claims] == [verdict, verdict]


def test_the_mnist_text_says_here_once():
    summary, paired = mnist_tables(-0.05, 0.05)
    claims = mnist_claims(summary, paired, ["paper"], 1e-3, "s")
    text = mnist_text(summary, paired, claims, 1e-3, "Profile `quick`")
    assert "**not testable here**." in text and "here here" not in text
    summary, paired = mnist_tables(-0.01, 0.01)
    text = mnist_text(summary, paired, mnist_claims(summary, paired, ["paper"], 1e-3, "s"),
                      1e-3, "Profile `quick`")
    assert "**does not hold** here." in text


def test_algorithm_1_holds_only_where_the_paper_variant_reaches_the_lp_on_every_problem():
    def tables(gaps):
        summary = pd.DataFrame([{"problem": k, "variant": "paper", "gap": g}
                                for k, g in enumerate(gaps)])
        last = pd.DataFrame([{"problem": k, "variant": "paper", "eps": 0.0 if g < 0.5 else 0.1}
                             for k, g in enumerate(gaps)])
        return summary, last

    assert lp_claims(*tables([0.995, 0.99]), "s")[0]["outcome"] == "holds"
    assert lp_claims(*tables([0.995, 0.2]), "s")[0]["outcome"] == "partly"
    (row,) = lp_claims(*tables([0.0, 0.2]), "s")
    assert row["outcome"] == "does not hold"
    assert "paper: 0.0% to 20.0% of the LP optimum, eps = 0 in 2 of 2 runs" == row["measured"]

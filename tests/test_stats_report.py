"""Holm, power, fairness and verdicts (simulation.results.stats) and their report sections."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps
from test_report import METHODS, fake_summary

from simulation.results.power import mde, paired_power, t_power, users_needed
from simulation.results.stats import comparisons, fairness, holm
from simulation.results.tables import ceiling_lines, statistics_lines
from simulation.results.verdicts import verdict_sentence

pytestmark = pytest.mark.filterwarnings("error")  # degenerate data must not warn
Z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)  # the normal approximation's 2.8016


# --- Holm ---------------------------------------------------------------------------------
def test_holm_matches_the_hand_computed_step_down():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # sorted 0.001*4, 0.03*3, 0.04*2 -> raised to 0.09 (monotone), 0.2*1
    assert holm([0.04, 0.001, 0.03, 0.2]) == pytest.approx([0.09, 0.004, 0.09, 0.2])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([0.01, None, 0.04, 0.03]) == pytest.approx([0.03, None, 0.06, 0.06])
    assert holm([None]) == [None] and holm([]) == []


# --- power --------------------------------------------------------------------------------
def test_mde_shrinks_with_users_and_tends_to_the_normal_approximation():
    sd = 0.15
    mdes = [mde(sd, n) for n in (3, 5, 10, 20, 40, 80, 160)]
    assert all(a > b for a, b in zip(mdes, mdes[1:]))
    for n in (10, 40):  # the t-test needs a larger gap than the normal test, a little
        assert mde(sd, n) > Z * sd / math.sqrt(n)
    assert mde(sd, 2000) == pytest.approx(Z * sd / math.sqrt(2000), rel=2e-3)
    assert t_power(mde(sd, 8) / sd, 8) == pytest.approx(0.8, abs=1e-9)


def test_users_needed_matches_gpower_and_the_mde_formula():
    # G*Power, matched-pairs t-test, two-sided alpha 0.05, power 0.8: dz 0.5 -> 34, 0.2 -> 199
    assert users_needed(0.5, 1.0) == 34 and users_needed(0.2, 1.0) == 199
    for sd in (0.05, 0.1, 0.3):
        n = users_needed(0.02, sd)
        assert mde(sd, n) <= 0.02 < mde(sd, n - 1)  # the fewest users whose MDE reaches 0.02
        assert math.ceil((Z * sd / 0.02) ** 2) <= n <= math.ceil((Z * sd / 0.02) ** 2) + 3


def test_paired_power_uses_the_sd_of_the_differences_and_says_when_it_cannot():
    d = [0.1, -0.05, 0.2, 0.0, 0.15, -0.1, 0.05, 0.12]
    pw = paired_power(d)
    sd = float(np.std(d, ddof=1))
    assert pw["n"] == 8 and pw["sd"] == pytest.approx(sd) and pw["note"] is None
    assert pw["mde_80"] == pytest.approx(mde(sd, 8))
    assert pw["users_for_0.02"] == users_needed(0.02, sd)
    for degenerate in ([0.3], [], [0.1, 0.1, 0.1]):
        pw = paired_power(degenerate)
        assert pw["mde_80"] is None and pw["users_for_0.02"] is None and pw["note"]


# --- fairness -----------------------------------------------------------------------------
VALUES = [0.9, 0.1, 0.5, 0.7, 0.3, 0.8, 0.6, 0.4, 0.2, 0.95, 0.85, 0.05]


def test_fairness_takes_the_worst_decile_in_the_metrics_direction():
    up = fairness(VALUES, higher_is_better=True)  # 12 users: 10% rounds up to 2
    assert up == {"worst10_mean": pytest.approx(0.075), "std": pytest.approx(np.std(VALUES)),
                  "users": 12, "worst_users": 2}
    assert fairness(VALUES, higher_is_better=False)["worst10_mean"] == pytest.approx(0.925)
    assert fairness(VALUES[:5], True) | {"std": 0} == {"worst10_mean": 0.1, "std": 0,
                                                       "users": 5, "worst_users": 1}
    assert fairness([], True)["worst10_mean"] is None
    per_user = {"cdcda": {f"u{i}": {"mae": v, "accuracy": v} for i, v in enumerate(VALUES)}}
    f = comparisons(per_user, ["mae", "accuracy"])["fairness"]["cdcda"]
    assert f["mae"]["worst10_mean"] == pytest.approx(0.925)  # mae: the highest errors
    assert f["accuracy"]["worst10_mean"] == pytest.approx(0.075)


# --- verdicts -----------------------------------------------------------------------------
def _per_user(metric: str, up: float) -> dict:
    """cdcda clearly better than weak, clearly worse than strong, tied with twin (a
    zero-mean wobble), on 12 users; `up` = +1 for a score, -1 for an error."""
    base = {f"u{i:02d}": 0.4 + 0.02 * i for i in range(12)}
    wobble = [0.05, -0.05, 0.03, -0.03, 0.08, -0.08, 0.01, -0.01, 0.02, -0.02, 0.04, -0.04]
    return {"cdcda": {u: {metric: v} for u, v in base.items()},
            "weak": {u: {metric: v - up * (0.2 + 0.01 * (i % 3))}
                     for i, (u, v) in enumerate(base.items())},
            "twin": {u: {metric: v + w} for (u, v), w in zip(base.items(), wobble)},
            "strong": {u: {metric: v + up * (0.15 + 0.01 * (i % 4))}
                       for i, (u, v) in enumerate(base.items())}}


@pytest.mark.parametrize(("metric", "up"), [("accuracy", 1.0), ("mae", -1.0)])
def test_verdict_names_who_is_beaten_tied_and_lost_to(metric, up):
    c = comparisons(_per_user(metric, up), [metric], seed=1)
    holm_weak = c["paired"]["weak"][metric]["p_holm"]
    holm_strong = c["paired"]["strong"][metric]["p_holm"]
    raw = [c["paired"][o][metric]["p"] for o in ("weak", "twin", "strong")]
    assert [c["paired"][o][metric]["p_holm"] for o in ("weak", "twin", "strong")] == holm(raw)
    assert max(holm_weak, holm_strong) < 0.01 < c["paired"]["twin"][metric]["p_holm"]
    assert c["verdicts"][metric] == verdict_sentence(c, metric) == (
        f"{metric}: cdcda beats weak (Holm p {holm_weak:.3g}), ties twin, and loses to "
        f"strong (Holm p {holm_strong:.3g}) (95% paired bootstrap intervals; Holm-adjusted "
        "Wilcoxon p beside each claim).")
    assert comparisons(_per_user(metric, up), [metric], seed=1) == c  # seeded


def test_verdict_without_the_reference_or_with_one_shared_user():
    per_user = _per_user("accuracy", 1.0)
    per_user["lonely"] = {"u00": {"accuracy": 0.1}}
    sentence = comparisons(per_user, ["accuracy"])["verdicts"]["accuracy"]
    assert "fewer than two shared users with lonely, so no claim" in sentence
    del per_user["cdcda"]
    c = comparisons(per_user, ["accuracy"])
    assert c["verdicts"]["accuracy"].startswith("accuracy: no paired comparison (reference")
    json.dumps(c, allow_nan=False)


# --- report -------------------------------------------------------------------------------
def _summary_with_extras() -> dict:
    s = fake_summary()
    for m, comm in s["communication"].items():
        per = comm["per_user_mean"]["up"] + comm["per_user_mean"]["down"]
        rounds = (2, 20) if m == "cdcda" else (1,)
        comm["projection"] = [{"users": n, "rounds": r, "bytes": per * n * r,
                               "bytes_per_user": per * r} for n in (1000, 10000) for r in rounds]
    s["data_info"] = {"single_answer_ceiling": {  # as tasks.ceiling writes it
        "generator": "tags", "task": "LaMP-2", "heterogeneity": 0.5, "seed": 0, "users": 256,
        "inputs": 32, "answers": 8192, "single_answer": {"accuracy": 0.21, "f1": 0.05},
        "oracle": {"accuracy": 1.0, "f1": 1.0}}}
    return s


def test_report_carries_verdicts_holm_power_fairness_projections_and_ceiling(tmp_path):
    from simulation.results.report import write_report

    (tmp_path / "summary.json").write_text(json.dumps(_summary_with_extras()))
    text = write_report(tmp_path).read_text()
    assert text.index("## Verdict") < text.index("## Methods")
    assert "- accuracy: cdcda beats " in text and "- f1: cdcda beats " in text
    assert "| Wilcoxon p | Holm p | verdict |" in text
    for m in METHODS:  # every method highlighted, none singled out
        if m != "cdcda":
            assert f"- cdcda vs {m} over " in text
    assert "## Power" in text and "| MDE at 80% power | users for 0.02 |" in text
    assert "## Fairness over users" in text and "| accuracy worst-10% mean | accuracy SD |" in text
    assert "| cdcda | 2 | 7.0 MB | 70.0 MB | 7.0 kB |" in text  # 3.5 kB a user a round
    assert "| cdcda | 20 | 70.0 MB | 700.0 MB | 70.0 kB |" in text
    assert "| zero_shot | 1 | 0 B | 0 B | 0 B |" in text
    assert ("- Best single answer for everyone scores 0.2100 of the oracle's 1.0000 on "
            "accuracy (256 simulated users, heterogeneity 0.5).") in text
    assert "scores 0.0500 of the oracle's 1.0000 on f1" in text
    assert write_report(tmp_path).read_text() == text  # same summary, same report


def test_ceiling_line_skips_what_is_not_a_stored_ceiling():
    def lines(ceil):
        return ceiling_lines({"data_info": {"single_answer_ceiling": ceil}})

    assert lines({"note": "n/a"}) == lines({}) == lines(None) == []
    assert ceiling_lines({}) == ceiling_lines({"data_info": "x"}) == []


def test_stale_comparisons_are_recomputed_with_their_seed_and_odd_data_info_is_ignored(tmp_path):
    from simulation.results.report import write_report

    s = _summary_with_extras()
    per_user = {m: r["per_user"] for m, r in s["methods"].items()}
    fresh = comparisons(per_user, ["accuracy", "f1"], seed=5)
    stale = {k: v for k, v in fresh.items() if k not in ("verdicts", "fairness")}
    s["comparisons"], s["data_info"] = stale, {"single_answer_ceiling": "n/a"}
    assert statistics_lines(s) == statistics_lines(s, fresh)
    (tmp_path / "summary.json").write_text(json.dumps(s))
    text = write_report(tmp_path).read_text()
    assert "## Fairness over users" in text and "single answer" not in text
    del s["data_info"], s["communication"]
    (tmp_path / "summary.json").write_text(json.dumps(s))
    text = write_report(tmp_path).read_text()
    assert "## Communication at scale" not in text and "## Verdict" in text

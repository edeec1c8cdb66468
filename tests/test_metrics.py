"""Parsing and metrics of every task against hand-computed values (LaMP semantics)."""

import math

import pytest

from tasks import get_task
from tasks.metrics import macro_f1, mae, rmse, rouge


def test_lamp2_accuracy_and_macro_f1_over_all_labels():
    t = get_task("LaMP-2")
    preds = [t.parse(x) for x in ["comedy", "The movie is sci-fi.", "Romance", "nonsense"]]
    assert preds == ["comedy", "sci-fi", "romance", "nonsense"]
    golds = ["comedy", "sci-fi", "action", "action"]
    s = t.score(preds, golds)
    assert s["accuracy"] == pytest.approx(0.5)
    # comedy F1 = 1, sci-fi F1 = 1, action F1 = 0, romance F1 = 0, 11 unseen labels = 0
    assert s["f1"] == pytest.approx(2 / 15)


def test_lamp1_parses_brackets_and_bare_digits():
    t = get_task("LaMP_1")
    assert [t.parse(x) for x in ["[2]", "2", "The answer is [1]."]] == ["[2]", "[2]", "[1]"]
    s = t.score(["[1]", "[2]", "[2]"], ["[1]", "[1]", "[2]"])
    assert s["accuracy"] == pytest.approx(2 / 3)
    # [1]: tp1 fp0 fn1 -> 2/3 ; [2]: tp1 fp1 fn0 -> 2/3
    assert s["f1"] == pytest.approx(2 / 3)


def test_lamp3_unparsable_scores_as_worst_rating():
    t = get_task("3")
    assert t.parse(" 4 stars") == "4"
    assert t.parse("I'd say 2") == "2"
    assert t.parse("great!") == "great!"
    # gold 4, unparsable -> 1 (error 3); gold 2, unparsable -> 5 (error 3); gold 3, pred 3
    assert mae(["x", "y", "3"], ["4", "2", "3"]) == pytest.approx(2.0)
    assert rmse(["x", "y", "3"], ["4", "2", "3"]) == pytest.approx(math.sqrt(6))
    assert t.score(["5", "1"], ["4", "1"]) == {"mae": 0.5, "rmse": pytest.approx(math.sqrt(0.5))}


def test_rouge_matches_hand_computed_f_measures():
    # pred "a b c", gold "a b d": R1 p=r=2/3 ; LCS "a b" -> RL 2/3
    s = rouge(["a b c"], ["a b d"])
    assert s["rouge-1"] == pytest.approx(2 / 3)
    assert s["rouge-L"] == pytest.approx(2 / 3)
    # order matters for ROUGE-L only: "c b a" vs "a b c": R1 = 1, LCS = 1 -> 1/3
    s = rouge(["c b a"], ["a b c"])
    assert s["rouge-1"] == pytest.approx(1.0)
    assert s["rouge-L"] == pytest.approx(1 / 3)


def test_generation_parse_strips_labels_and_takes_first_line():
    t = get_task("LaMP-4")
    assert t.parse('Headline: "Council approves buses"\nmore text') == "Council approves buses"


def test_macro_f1_prediction_outside_labels_counts_as_miss():
    assert macro_f1(["zzz"], ["a"], ["a", "b"]) == 0.0


def test_metrics_refuse_length_mismatch():
    with pytest.raises(ValueError, match="2 predictions for 1 golds"):
        mae(["1", "2"], ["1"])

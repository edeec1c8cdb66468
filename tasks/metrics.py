"""Task metrics with the official LaMP semantics (accuracy, macro-F1, MAE, RMSE, ROUGE)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def accuracy(preds: Sequence[str], golds: Sequence[str]) -> float:
    _check(preds, golds)
    return sum(p == g for p, g in zip(preds, golds)) / len(golds)


def macro_f1(preds: Sequence[str], golds: Sequence[str], labels: Sequence[str]) -> float:
    """Macro-F1 over *all* task labels, as LaMP computes it (sklearn, labels given).

    A label with neither gold nor predicted examples scores 0 (sklearn's zero_division),
    and predictions outside the label set count as errors for the gold label.
    """
    _check(preds, golds)
    if not labels:
        raise ValueError("macro-F1 needs the task's labels")
    scores = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(preds, golds))
        fp = sum(p == label and g != label for p, g in zip(preds, golds))
        fn = sum(p != label and g == label for p, g in zip(preds, golds))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return sum(scores) / len(scores)


def rating_value(pred: str, gold: float) -> float:
    """A predicted rating as a number; unparsable -> the rating farthest from the gold.

    This is LaMP-3's official rule (1 or 5, whichever is worse for this gold). A number off
    the 1-5 scale counts as unparsable too, where LaMP's script takes it as is: 'nan',
    'Infinity' or '1e200' would make MAE/RMSE nan, inf or raise OverflowError.
    """
    try:
        value = float(pred)
    except (TypeError, ValueError):
        value = math.nan
    if 1.0 <= value <= 5.0:  # False for nan
        return value
    return 1.0 if abs(1 - gold) > abs(5 - gold) else 5.0


def mae(preds: Sequence[str], golds: Sequence[str]) -> float:
    _check(preds, golds)
    g = [float(x) for x in golds]
    return sum(abs(rating_value(p, y) - y) for p, y in zip(preds, g)) / len(g)


def rmse(preds: Sequence[str], golds: Sequence[str]) -> float:
    _check(preds, golds)
    g = [float(x) for x in golds]
    return math.sqrt(sum((rating_value(p, y) - y) ** 2 for p, y in zip(preds, g)) / len(g))


_SCORER = None


def rouge(preds: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1 and ROUGE-L F-measure, no stemming: `evaluate.load("rouge")` defaults."""
    global _SCORER  # per-process cache of a stateless scorer
    from rouge_score import rouge_scorer

    _check(preds, golds)
    if _SCORER is None:
        _SCORER = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    r1 = rl = 0.0
    for p, g in zip(preds, golds):
        s = _SCORER.score(g, p)
        r1 += s["rouge1"].fmeasure
        rl += s["rougeL"].fmeasure
    return {"rouge-1": r1 / len(golds), "rouge-L": rl / len(golds)}


def _check(preds: Sequence[str], golds: Sequence[str]) -> None:
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} golds")
    if not golds:
        raise ValueError("no examples to score")

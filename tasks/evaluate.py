"""Score LaMP-format predictions against LaMP-format golds, as LaMP's official script does."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from tasks import metrics
from tasks.catalog import Task, get_task
from tasks.lamp import LampFormatError, read_golds, read_outputs

log = logging.getLogger(__name__)


def score_files(task: str, golds: Path | str, preds: Path | str, parse: bool = False) -> dict:
    """Metrics of a predictions file, both files in LaMP outputs format.

    By default the strings are scored as LaMP's official script does (`official_score`);
    with `parse`, raw model outputs are canonicalised first (a label found in chatter, a
    leading rating) and scored as a cdcda run scores them (`Task.score`).
    Both files' `task` fields (where present) must be `task`, and ids must be unique.
    """
    spec = get_task(task)
    _, gold = read_golds(golds, spec)
    if not gold:
        raise LampFormatError(golds, None, "golds", "is empty: nothing to score")
    _, pred = read_outputs(preds, spec)
    missing = [gid for gid in gold if gid not in pred]
    if missing:
        raise LampFormatError(preds, missing[0], "output",
                              f"no prediction for this gold ({len(missing)} missing)")
    ids = list(gold)
    p, g = [pred[i] for i in ids], [gold[i] for i in ids]
    scores = spec.score([spec.parse(x) for x in p], g) if parse else official_score(spec, p, g)
    return {**scores, "n": len(ids)}


def score_run_predictions(task: str, preds: Path | str, parse: bool = False) -> dict:
    """Metrics of a run's own predictions: `DIR/predictions/<method>/` (or one file of it),
    each file `{"user_id", "method", "predictions": [{"id", "raw", "output", "gold"}]}`,
    golds included (they were scored on the device). Scored like `score_files`: LaMP's
    official semantics on `raw`, or with `parse` as the run scored them; `users` and `n`
    say how many users and queries, and `user_mean` the mean of per-user scores (what the
    run's summary reports)."""
    spec = get_task(task)
    path = Path(preds)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise LampFormatError(path, None, "predictions", "holds no <user>.json files")
    raws, golds, per_user = [], [], []
    for f in files:
        try:
            data = json.loads(f.read_text())
            items = data["predictions"]
            pairs = [(str(it["raw"]), str(it["gold"])) for it in items]
        except (ValueError, KeyError, TypeError) as err:
            raise LampFormatError(f, None, "predictions", "is not a run's predictions file "
                                  f"(needs predictions: [{{raw, gold}}]): {err}") from None
        if not pairs:
            continue
        raws += [r for r, _ in pairs]
        golds += [g for _, g in pairs]
        per_user.append(_score(spec, [r for r, _ in pairs], [g for _, g in pairs], parse,
                               warn=False))
    if not golds:
        raise LampFormatError(path, None, "predictions", "hold no predictions: nothing to score")
    scores = _score(spec, raws, golds, parse)
    means = {k: math.fsum(u[k] for u in per_user) / len(per_user) for k in scores}
    return {**scores, "n": len(golds), "users": len(per_user), "user_mean": means}


def _score(spec: Task, preds: list[str], golds: list[str], parse: bool,
           warn: bool = True) -> dict[str, float]:
    return spec.score([spec.parse(x) for x in preds], golds) if parse else \
        official_score(spec, preds, golds, warn)


def official_score(task: Task, preds: Sequence[str], golds: Sequence[str],
                   warn: bool = True) -> dict[str, float]:
    """The task's metrics with the semantics of LaMP's `eval/evaluation.py`, on raw strings.

    Predictions and golds are stripped, nothing else. Classification: a prediction must be
    exactly (case-sensitively) one of the task's labels, anything else is wrong. Rating: a
    prediction `float()` cannot read scores as 1 or 5, whichever is farther from the gold;
    any finite number is taken as it is, off the 1-5 scale too. Generation: ROUGE-1/L.
    """
    if len(preds) != len(golds) or not golds:
        raise ValueError(f"need one prediction per gold, and golds: got {len(preds)} "
                         f"predictions for {len(golds)} golds")
    preds = [str(p).strip() for p in preds]
    golds = [str(g).strip() for g in golds]
    if task.kind == "classification":
        if bad := [g for g in golds if g not in task.labels]:
            raise ValueError(f"gold {bad[0]!r} is not a {task.name} label")
        if warn:
            _report(task, sum(p not in task.labels for p in preds), len(preds),
                    "are not exactly one of its labels: scored as wrong")
        return {"accuracy": metrics.accuracy(preds, golds),
                "f1": metrics.macro_f1(preds, golds, task.labels)}
    if task.kind == "rating":
        values, ys = [_read_number(p) for p in preds], [float(g) for g in golds]
        if warn:
            _report(task, values.count(None), len(values),
                    "are not finite numbers: scored as the rating farthest from the gold")
        errors = [abs((_worst(y) if v is None else v) - y) for v, y in zip(values, ys)]
        return {"mae": _mean(errors), "rmse": _rms(errors)}
    # LaMP averages with `evaluate`'s bootstrap aggregator; cdcda reports the plain mean.
    return metrics.rouge(preds, golds)


def _read_number(pred: str) -> float | None:
    """The prediction as LaMP reads it, or None where it cannot (then the worst is scored).

    'nan' and 'inf' count as unreadable: `float()` accepts them, but LaMP's script then
    fails inside sklearn, so there is no official number to follow.
    """
    try:
        value = float(pred)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _worst(gold: float) -> float:
    return 1.0 if abs(1 - gold) > abs(5 - gold) else 5.0


def _mean(errors: Sequence[float]) -> float:
    """The mean, scaled so that wild finite predictions (1e308, -1e308) cannot overflow."""
    top = max(errors)
    if top == 0:
        return 0.0
    return top * (math.fsum(e / top for e in errors) / len(errors))


def _rms(errors: Sequence[float]) -> float:
    """Root mean square, scaled so that a wild finite prediction (1e200) cannot overflow."""
    top = max(errors)
    if top == 0:
        return 0.0
    return top * math.sqrt(math.fsum((e / top) ** 2 for e in errors) / len(errors))


def _report(task: Task, bad: int, n: int, what: str) -> None:
    if bad:
        log.warning("%d of %d %s predictions %s (parse=True / `cdcda eval --parse` reads "
                    "model chatter leniently)", bad, n, task.name, what)

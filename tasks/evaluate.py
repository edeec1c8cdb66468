"""Score LaMP-format predictions against LaMP-format golds."""

from __future__ import annotations

from pathlib import Path

from tasks.catalog import get_task
from tasks.lamp import LampFormatError, read_golds


def score_files(task: str, golds: Path | str, preds: Path | str, parse: bool = True) -> dict:
    """Metrics of a predictions file, both files in LaMP outputs format.

    With `parse`, raw model outputs are canonicalised first (a label found in chatter, a
    leading rating); without it the strings are compared as LaMP's official script does.
    """
    spec = get_task(task)
    _, gold = read_golds(golds)
    _, pred = read_golds(preds)
    missing = [gid for gid in gold if gid not in pred]
    if missing:
        raise LampFormatError(preds, missing[0], "output",
                              f"no prediction for this gold ({len(missing)} missing)")
    ids = list(gold)
    p = [spec.parse(pred[i]) if parse else pred[i].strip() for i in ids]
    return {**spec.score(p, [gold[i] for i in ids]), "n": len(ids)}

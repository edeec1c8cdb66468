"""Keep only synthetic candidates worth training on, counting every rejection by reason."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from server.prompts import is_item
from server.style import in_style
from tasks.catalog import Task

REASONS = ("unparsable", "invalid_label", "invalid_format", "copy_of_seed", "duplicate",
           "near_duplicate", "inconsistent", "off_style")


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", text.lower()))


def _item_words(task: Task, item: dict) -> frozenset[str]:
    """What two examples are compared on for copies and near duplicates.

    Labels and ratings: the input alone (the same input with another label is a conflict,
    not new data). Generation: input and output together, so a templated input with a new
    answer is new, while a new input carrying a seed's very answer is still a copy.
    """
    fields = task.item_fields if task.kind == "generation" else task.item_fields[:1]
    return _words(" ".join(str(item.get(f, "")) for f in fields))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass
class FilterResult:
    kept: list[dict] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    generated: int = 0

    def counts(self) -> dict[str, int]:
        return {"generated": self.generated, "kept": len(self.kept),
                **{f"rejected_{r}": self.rejected.get(r, 0) for r in REASONS}}


def normalise_output(task: Task, item: dict) -> dict:
    """Canonical label/rating in the output field (e.g. 'Sci-Fi' -> 'sci-fi')."""
    y = task.answer_field
    if y is not None and task.kind != "generation":
        item = {**item, y: task.parse(item[y])}
    return item


def filter_candidates(task: Task, candidates: Sequence[dict | None], seeds: Sequence[dict],
                      near_duplicate: float, style: bool = False, quality: bool = True
                      ) -> FilterResult:
    """Validate format and label, drop copies of seeds and exact or near duplicates, and
    (`style`, generation tasks) answers whose form the seeds' answers do not show.

    `quality=False` (the filters-off ablation) keeps every candidate that parses with a
    valid label: only what cannot be trained on at all is dropped.

    Every candidate is counted once: kept, or rejected for the first reason that applies.
    Anything `parse_candidate` could not have returned (None, a missing, blank or non-text
    field) is `unparsable`; kept items carry the task's fields only.
    """
    res = FilterResult(generated=len(candidates))
    seed_words = [_item_words(task, s) for s in seeds]
    y = task.item_fields[-1]
    seed_answers = [str(s[y]) for s in seeds if y in s]
    kept_words: list[frozenset[str]] = []
    kept_exact: set[str] = set()
    for cand in candidates:
        if not is_item(task, cand):  # a KeyError or AttributeError below otherwise
            res.rejected["unparsable"] += 1
            continue
        cand = normalise_output(task, {f: cand[f] for f in task.item_fields})
        if task.answer_field is not None and not task.is_valid_output(cand[task.answer_field]):
            res.rejected["invalid_label"] += 1
            continue
        if not quality:
            res.kept.append(cand)
            continue
        x = task.item_fields[0]
        if len(cand[x]) > 1000 or len(_words(cand[x])) < 3:  # length first: cheap on 1 MB
            res.rejected["invalid_format"] += 1
            continue
        words = _item_words(task, cand)
        if any(jaccard(words, s) >= near_duplicate for s in seed_words):
            res.rejected["copy_of_seed"] += 1
            continue
        if style and task.kind == "generation" and not in_style(str(cand[y]), seed_answers):
            res.rejected["off_style"] += 1
            continue
        key = " ".join(sorted(words)) + "\x00" + str(cand.get(y))
        if key in kept_exact:
            res.rejected["duplicate"] += 1
            continue
        if any(jaccard(words, k) >= near_duplicate for k in kept_words):
            res.rejected["near_duplicate"] += 1
            continue
        kept_exact.add(key)
        kept_words.append(words)
        res.kept.append(cand)
    return res


def total_counts(per_user: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Generated, kept and rejected-by-reason counts summed over users."""
    total: Counter = Counter()
    for counts in per_user.values():
        total.update(counts)
    return {"generated": total["generated"], "kept": total["kept"],
            **{f"rejected_{r}": total[f"rejected_{r}"] for r in REASONS}}

"""Few-shot augmentation prompts built from one user's seeds, in the task's own fields."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from tasks.catalog import Task

_HEADERS = {
    "LaMP-1": "Papers written by one author (title and abstract):",
    "LaMP-2": "Movies tagged by one user. Each tag is one of: {labels}.",
    "LaMP-3": "Product reviews written by one user, with the score (1 to 5) the user gave:",
    "LaMP-4": "News articles with the headline one journalist wrote for them:",
    "LaMP-5": "Paper abstracts with the title one author gave them:",
    "LaMP-7": "Tweets written by one user:",
}


def _header(task: Task) -> str:
    return _HEADERS[task.name].format(labels=", ".join(task.labels))


def augmentation_prompt(task: Task, seeds: Sequence[dict], shuffle_seed: int) -> str:
    """A continuation prompt: header, the seeds as `field: value` blocks, an open block.

    Seed order is shuffled per candidate so n samples from one user differ. A seed shows
    only the fields its device let go (`device.seeds.fields`); the open block still asks
    for every field, since a training example needs them all.
    """
    header = _header(task)
    items = list(seeds)
    random.Random(shuffle_seed).shuffle(items)
    blocks = ["\n".join(f"{f}: {it[f]}" for f in task.item_fields if f in it) for it in items]
    return header + "\n\n" + "".join(b + "\n\n" for b in blocks) + f"{task.item_fields[0]}:"


def relabel_prompt(task: Task, seeds: Sequence[dict], item: dict) -> str:
    """Ask the cloud for the output field of a candidate, the seeds as context."""
    x, y = task.item_fields
    blocks = "".join(f"{x}: {s[x]}\n{y}: {s[y]}\n\n" for s in seeds if x in s and y in s)
    return f"{_header(task)}\n\n{blocks}{x}: {item[x]}\n{y}:"


def parse_candidate(task: Task, text: str, input_only: bool = False) -> dict | None:
    """Read a completion that continues an open `first_field:` block; None if malformed.

    `input_only` (two-step generation) needs the first field alone: the answer comes next.
    """
    fields = task.item_fields
    lines = [ln.strip() for ln in ("x" + text).splitlines() if ln.strip()]
    if not lines:
        return None
    lines[0] = f"{fields[0]}:{lines[0][1:]}"  # the prompt ended with the first field's name
    item: dict[str, str] = {}
    for ln in lines:
        name, sep, value = ln.partition(":")
        name = name.strip().lower()
        if sep and name in fields and name not in item:
            item[name] = value.strip()
    if input_only:
        item = {fields[0]: item[fields[0]]} if fields[0] in item else {}
    return item if is_item(task, item, fields[:1] if input_only else None) else None


def is_item(task: Task, item: object, fields: Sequence[str] | None = None) -> bool:
    """Whether `item` could be a parsed candidate: each of the task's fields (or `fields`)
    non-blank text.

    Text must encode as UTF-8: an HTTP backend's JSON can carry lone surrogates ("\\ud800"),
    which reach the device inside the synthetic items and make its tokenizer raise.
    """
    if not isinstance(item, Mapping):
        return False
    for f in fields or task.item_fields:
        value = item.get(f)
        if not isinstance(value, str) or not value.strip():
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True

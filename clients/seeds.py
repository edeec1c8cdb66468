"""Which of a user's profile items leave the device as seeds for the cloud, and in what form.

The disclosure policy (`device.seeds`) is enforced here, on the device: at most k items,
only the allowed task fields (never ids, dates or other metadata), optionally scrubbed of
e-mail addresses, phone numbers and URLs.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from clients.scrub import PLACEHOLDERS, scrub
from clients.settings import SeedSettings
from tasks.catalog import Task
from tasks.structured import ConfigError


@dataclass(frozen=True)
class SeedSelection:
    """What leaves the device for one user, and what scrubbing replaced in it."""

    items: list[dict[str, str]]
    # kind ("email", "phone", "url") -> replacements; every kind when scrubbing, {} when not
    scrubbed: dict[str, int] = field(default_factory=dict)

    def metrics(self) -> dict[str, int]:
        """Scrub counts as reply metrics: {"seeds-scrubbed-email": 2, ...}."""
        return {f"seeds-scrubbed-{kind}": n for kind, n in self.scrubbed.items()}


def allowed_fields(task: Task, settings: SeedSettings) -> tuple[str, ...]:
    """The task's fields a seed may carry, in the task's order; unknown names are errors."""
    unknown = [f for f in settings.fields if f not in task.item_fields]
    if unknown:
        raise ConfigError(
            f"device.seeds.fields has {unknown[0]!r}, which is not a field of {task.name}; "
            f"allowed: {', '.join(task.item_fields)} (or [] for all)")
    if not settings.fields:
        return task.item_fields
    return tuple(f for f in task.item_fields if f in settings.fields)


def chosen_items(profile: Sequence[dict], settings: SeedSettings, seed: int) -> list[dict]:
    """The profile items the seeds are made of, whole, in the order they are sent (the
    device keeps them: cdcda_active's signal is its loss on each)."""
    k = min(settings.k, len(profile))
    if k == 0:
        return []
    if settings.policy == "recent":
        return list(profile)[-k:]  # profiles are date-sorted by the loader
    return random.Random(seed).sample(list(profile), k)


def disclose_seeds(task: Task, profile: Sequence[dict], settings: SeedSettings,
                   seed: int) -> SeedSelection:
    """Up to k items under the disclosure policy; `seed` fixes the random policy's choice."""
    fields = allowed_fields(task, settings)  # checked even when k = 0: a bad config is a bug
    chosen = chosen_items(profile, settings, seed)
    items = [{f: str(it[f]) for f in fields} for it in chosen]
    if not settings.scrub:
        return SeedSelection(items)
    total: Counter = Counter({kind: 0 for kind in PLACEHOLDERS})
    for it in items:
        for f in fields:
            it[f], counts = scrub(it[f])
            total.update(counts)
    return SeedSelection(items, dict(total))


def select_seeds(task: Task, profile: Sequence[dict], settings: SeedSettings,
                 seed: int) -> list[dict]:
    """The items of `disclose_seeds` alone, for callers that do not report scrub counts."""
    return disclose_seeds(task, profile, settings, seed).items

"""The bundled offline benchmark: users with latent preferences, written in LaMP format.

Each user has a hidden preference that a model can learn from a handful of examples and
that a generic model cannot guess, so personalization measurably matters:
- `citation` (LaMP-1 format): the sub-topic of their field this user cites; both candidate
  references share the field, only the user's papers tell which sub-topic is theirs;
- `tags` (LaMP-2 format): which tag this user gives each kind of movie;
- `rating` (LaMP-3 format): this user's bias, harsh or generous, on top of the review's tone;
- `headline` (LaMP-4 format): this user's headline style;
- `title` (LaMP-5 format): this user's paper-title style;
- `tweet` (LaMP-7 format): this user's voice (opener, word choice, sign-off, hashtag, case,
  punctuation, emoji); the query is the neutral text, the gold the user's own tweet.
The generator knows every user's oracle answer; `oracle_outputs.json` holds them, and golds
differ from the oracle only where `noise` flips an answer. Deterministic for a seed.
Each generator lives in its own module under `tasks.generators`, imported here.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path

from tasks.catalog import TASKS
from tasks.files import check_folder, write_json
from tasks.generators.citation import citation_user
from tasks.generators.headline import headline_user
from tasks.generators.rating import rating_user
from tasks.generators.tags import tags_user
from tasks.generators.title import title_user
from tasks.generators.tweet import tweet_user
from tasks.generators.user import User, same_shape

log = logging.getLogger(__name__)

# name: (LaMP task, user factory, labels `noise` may flip a gold to: () for free text)
GENERATORS: dict[str, tuple[str, Callable[[random.Random], User], tuple[str, ...]]] = {
    "tags": ("LaMP-2", same_shape("LaMP-2", tags_user), TASKS["LaMP-2"].labels),
    "rating": ("LaMP-3", same_shape("LaMP-3", rating_user), ("1", "2", "3", "4", "5")),
    "headline": ("LaMP-4", same_shape("LaMP-4", headline_user), ()),
    "citation": ("LaMP-1", citation_user, TASKS["LaMP-1"].labels),
    "title": ("LaMP-5", same_shape("LaMP-5", title_user), ()),
    "tweet": ("LaMP-7", tweet_user, ()),
}


def make_benchmark(
    task: str,
    users: int,
    seed: int,
    out: Path | str,
    profile_size: int = 8,
    queries: int = 2,
    noise: float = 0.0,
) -> dict:
    """Write `dev_questions.json`, `dev_outputs.json` and `oracle_outputs.json` to `out`."""
    if task not in GENERATORS:
        raise ValueError(f"--task '{task}' is not one of {', '.join(GENERATORS)}")
    if not 1 <= users <= 10_000_000:
        raise ValueError(f"--users must be between 1 and 10,000,000, got {users}")
    for option, value in (("--profile-size", profile_size), ("--queries", queries)):
        if value < 1:
            raise ValueError(f"{option} must be at least 1, got {value}")
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"--noise must be in [0, 1), got {noise}")
    out = Path(out)
    check_folder(out)  # before generating: 100k users take seconds
    lamp_name, make_user, flip_labels = GENERATORS[task]
    if noise and not flip_labels:
        log.warning("--noise %s has no effect on %s: its golds are free text", noise, task)
    lamp = TASKS[lamp_name]
    questions, golds, oracle = [], [], []
    for u in range(users):
        rng = random.Random(f"{seed}/{task}/{u}")
        item, query = make_user(rng)
        uid = f"u{u}"
        profile = [{"id": f"{uid}-p{j}", "date": f"2024-{1 + j % 12:02d}-{1 + j:02d}",
                    **item(rng)} for j in range(profile_size)]
        if u == 0 and not lamp.profile_pairs(profile):
            log.warning("--profile-size %d gives %s users no %s training pair", profile_size,
                        task, lamp.name)
        for j in range(queries):
            text, answer = query(rng)
            qid = f"{uid}-q{j}"
            gold = answer
            if noise and flip_labels and rng.random() < noise:
                gold = rng.choice([lab for lab in flip_labels if lab != answer])
            questions.append({"id": qid, "user_id": uid, "input": text, "profile": profile})
            golds.append({"id": qid, "output": gold})
            oracle.append({"id": qid, "output": answer})
    out.mkdir(parents=True, exist_ok=True)
    meta = {"generator": task, "task": lamp.lamp_id, "users": users, "seed": seed,
            "profile_size": profile_size, "queries": queries, "noise": noise}
    write_json(out / "dev_questions.json", questions, indent=None)
    write_json(out / "dev_outputs.json", {"task": lamp.lamp_id, "golds": golds}, indent=None)
    write_json(out / "oracle_outputs.json", {"task": lamp.lamp_id, "golds": oracle}, indent=None)
    write_json(out / "benchmark.json", meta, indent=None)
    return meta


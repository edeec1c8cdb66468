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
`heterogeneity` (h) mixes the population: each user keeps one shared preference with
probability 1 - h (see tasks.population); h = 1, the default, gives every user their own.
`benchmark.json` records how much the task rewards personalization at that h: the best
single answer for everyone against the oracle (tasks.ceiling).
Each generator lives in its own module under `tasks.generators`, listed in tasks.population.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tasks.catalog import TASKS
from tasks.ceiling import single_answer_ceiling
from tasks.files import check_folder, write_json
from tasks.population import (
    GENERATORS,
    check_heterogeneity,
    keeps_population,
    population_preference,
    user_stream,
)

__all__ = ["GENERATORS", "make_benchmark"]

log = logging.getLogger(__name__)
# The ceiling stored in benchmark.json: a fixed sample, so it costs well under a second.
CEILING_USERS, CEILING_INPUTS = 64, 16


def make_benchmark(
    task: str,
    users: int,
    seed: int,
    out: Path | str,
    profile_size: int = 8,
    queries: int = 2,
    noise: float = 0.0,
    heterogeneity: float = 1.0,
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
    heterogeneity = check_heterogeneity(heterogeneity)
    out = Path(out)
    check_folder(out)  # before generating: 100k users take seconds
    generator = GENERATORS[task]
    flip_labels = generator.flip_labels
    if noise and not flip_labels:
        log.warning("--noise %s has no effect on %s: its golds are free text", noise, task)
    lamp = TASKS[generator.lamp_name]
    population = population_preference(task, seed)
    questions, golds, oracle = [], [], []
    for u in range(users):
        rng = user_stream(task, seed, u)
        shared = population if keeps_population(task, seed, u, heterogeneity) else None
        item, query = generator.user(rng, shared)
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
            "profile_size": profile_size, "queries": queries, "noise": noise,
            "heterogeneity": heterogeneity,
            "single_answer_ceiling": single_answer_ceiling(
                task, heterogeneity, users=CEILING_USERS, seed=seed, inputs=CEILING_INPUTS)}
    write_json(out / "dev_questions.json", questions, indent=None)
    write_json(out / "dev_outputs.json", {"task": lamp.lamp_id, "golds": golds}, indent=None)
    write_json(out / "oracle_outputs.json", {"task": lamp.lamp_id, "golds": oracle}, indent=None)
    write_json(out / "benchmark.json", meta, indent=None)
    return meta


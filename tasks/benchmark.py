"""The bundled offline benchmark: users with latent preferences, written in LaMP format.

Each user has a hidden preference that a model can learn from a handful of examples and
that a generic model cannot guess, so personalization measurably matters:
- `tags` (LaMP-2 format): which tag this user gives each kind of movie;
- `rating` (LaMP-3 format): this user's bias, harsh or generous, on top of the review's tone;
- `headline` (LaMP-4 format): this user's headline style.
The generator knows every user's oracle answer; `oracle_outputs.json` holds them, and golds
differ from the oracle only where `noise` flips an answer. Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from tasks.catalog import TASKS
from tasks.files import write_json

# --- tags -------------------------------------------------------------------------------
_MOVIE_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # kind: (subjects, plots, tags a user may give this kind)
    "space": (
        ("A starship crew", "A lone astronaut", "A settler on Mars", "A cargo pilot"),
        ("fights to survive after the engines fail near Jupiter",
         "intercepts a signal from a dying star", "races to repair the station's oxygen plant"),
        ("sci-fi", "thought-provoking", "action", "dystopia"),
    ),
    "magic": (
        ("A young witch", "An apprentice wizard", "A princess cursed at birth", "A talking fox"),
        ("searches an enchanted forest for a stolen crown", "must break a spell before winter",
         "learns that her family's spells are fading"),
        ("fantasy", "based on a book", "classic", "romance"),
    ),
    "crime": (
        ("A tired detective", "A bank robber", "A rookie police officer", "A crooked lawyer"),
        ("plans one last heist in a rainy city", "hunts a killer who leaves riddles",
         "uncovers corruption inside the department"),
        ("violence", "twist ending", "action", "dark comedy"),
    ),
    "love": (
        ("A stranger", "A widowed baker", "A shy librarian", "A childhood friend"),
        ("falls for a neighbour during a summer in Lisbon", "writes letters to a lost love",
         "meets an old flame at a wedding"),
        ("romance", "comedy", "classic", "based on a book"),
    ),
    "war": (
        ("A platoon of young soldiers", "A field nurse", "A codebreaker", "A fighter pilot"),
        ("holds a bridge through a bitter winter", "smuggles children across the front line",
         "cracks an enemy cipher against the clock"),
        ("true story", "violence", "classic", "thought-provoking"),
    ),
    "mind": (
        ("A psychiatrist", "A man with no memory", "An insomniac artist", "A grieving mother"),
        ("starts to doubt which of her memories are real", "keeps waking up on the same day",
         "is haunted by a patient who may not exist"),
        ("psychology", "twist ending", "thought-provoking", "dark comedy"),
    ),
    "society": (
        ("A factory worker", "A teacher in a poor district", "A journalist", "A city mayor"),
        ("fights an eviction notice with her neighbours", "exposes a company poisoning a river",
         "loses her job to an algorithm"),
        ("social commentary", "true story", "dystopia", "comedy"),
    ),
}


def _tags_user(rng: random.Random) -> Callable[[random.Random], tuple[dict, str, str]]:
    preference = {kind: rng.choice(spec[2]) for kind, spec in _MOVIE_KINDS.items()}
    kinds = rng.sample(sorted(_MOVIE_KINDS), 4)  # this user watches four kinds of movie

    def sample(r: random.Random) -> tuple[dict, str, str]:
        kind = r.choice(kinds)
        subjects, plots, _ = _MOVIE_KINDS[kind]
        text = f"{r.choice(subjects)} {r.choice(plots)}."
        return {"description": text}, "tag", preference[kind]

    return sample


# --- rating -----------------------------------------------------------------------------
_PRODUCTS = ("kettle", "backpack", "desk lamp", "phone case", "blender", "rain jacket",
             "office chair", "pair of headphones", "coffee grinder", "yoga mat")
_TONE = {
    1: ("Broke within a week and support never answered.", "A total waste of money."),
    2: ("Works, barely, and feels cheap in the hand.", "Disappointing for what it costs."),
    3: ("Does the job, nothing more.", "Some good points, some annoying ones."),
    4: ("Solid and well made, only small quibbles.", "Happy with it overall."),
    5: ("Excellent in every way, I would buy it again.", "Flawless, exceeded what I hoped."),
}


def _rating_user(rng: random.Random) -> Callable[[random.Random], tuple[dict, str, str]]:
    bias = rng.choice((-2, -1, -1, 0, 1, 1, 2))  # harsh to generous

    def sample(r: random.Random) -> tuple[dict, str, str]:
        tone = r.randint(1, 5)
        text = f"This {r.choice(_PRODUCTS)}: {r.choice(_TONE[tone])}"
        return {"text": text}, "score", str(min(5, max(1, tone + bias)))

    return sample


# --- headline ---------------------------------------------------------------------------
_ACTORS = ("City council", "Local school board", "State university", "Regional hospital",
           "Water authority", "Transit agency", "County court", "Harbour police")
_ACTIONS = (("approves", "approved", "plan to extend night buses"),
            ("rejects", "rejected", "proposal to raise parking fees"),
            ("delays", "delayed", "vote on the new library budget"),
            ("announces", "announced", "free summer lunches for children"),
            ("cuts", "cut", "funding for the riverside park"),
            ("reviews", "reviewed", "complaints about late trains"))
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_STYLES: dict[str, Callable[[str, tuple[str, str, str]], str]] = {
    "plain": lambda a, v: f"{a} {v[0]} {v[2]}",
    "question": lambda a, v: f"Will the {a.lower()} {v[0][:-1]} {v[2]}?",
    "colon": lambda a, v: f"{a}: {v[2]} {v[1]}",
    "breaking": lambda a, v: f"BREAKING: {a} {v[0]} {v[2]}",
    "local": lambda a, v: f"Your town this week: {v[2]} {v[1]} by {a.lower()}",
}


def _headline_user(rng: random.Random) -> Callable[[random.Random], tuple[dict, str, str]]:
    style = _STYLES[rng.choice(sorted(_STYLES))]

    def sample(r: random.Random) -> tuple[dict, str, str]:
        actor, act, day = r.choice(_ACTORS), r.choice(_ACTIONS), r.choice(_DAYS)
        text = (f"On {day} the {actor.lower()} {act[1]} the {act[2]} after a long public "
                f"meeting, officials said. {r.randint(2, 9)} members spoke in favour.")
        return {"text": text}, "title", style(actor, act)

    return sample


GENERATORS = {
    "tags": ("LaMP-2", _tags_user, TASKS["LaMP-2"].labels),
    "rating": ("LaMP-3", _rating_user, ("1", "2", "3", "4", "5")),
    "headline": ("LaMP-4", _headline_user, ()),
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
    if profile_size < 1 or queries < 1:
        raise ValueError("--profile-size and --queries must be at least 1")
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"--noise must be in [0, 1), got {noise}")
    lamp_name, make_user, flip_labels = GENERATORS[task]
    lamp = TASKS[lamp_name]
    questions, golds, oracle = [], [], []
    for u in range(users):
        rng = random.Random(f"{seed}/{task}/{u}")
        sample = make_user(rng)
        uid = f"u{u}"
        profile = []
        for j in range(profile_size):
            fields, out_field, answer = sample(rng)
            profile.append({"id": f"{uid}-p{j}", "date": f"2024-{1 + j % 12:02d}-{1 + j:02d}",
                            **fields, out_field: answer})
        for j in range(queries):
            fields, _, answer = sample(rng)
            qid = f"{uid}-q{j}"
            gold = answer
            if noise and flip_labels and rng.random() < noise:
                gold = rng.choice([lab for lab in flip_labels if lab != answer])
            questions.append({"id": qid, "user_id": uid,
                              "input": lamp.instruction + next(iter(fields.values())),
                              "profile": profile})
            golds.append({"id": qid, "output": gold})
            oracle.append({"id": qid, "output": answer})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"generator": task, "task": lamp.lamp_id, "users": users, "seed": seed,
            "profile_size": profile_size, "queries": queries, "noise": noise}
    write_json(out / "dev_questions.json", questions, indent=None)
    write_json(out / "dev_outputs.json", {"task": lamp.lamp_id, "golds": golds}, indent=None)
    write_json(out / "oracle_outputs.json", {"task": lamp.lamp_id, "golds": oracle}, indent=None)
    write_json(out / "benchmark.json", meta, indent=None)
    return meta


"""LaMP-2 users: the latent preference is which tag this user gives each kind of movie."""

from __future__ import annotations

import random

from tasks.catalog import TASKS
from tasks.generators.user import Draw, Generator, same_shape

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


def draw_preference(rng: random.Random) -> dict[str, str]:
    """The tag given to each kind of movie."""
    return {kind: rng.choice(spec[2]) for kind, spec in _MOVIE_KINDS.items()}


def _describe(r: random.Random, kind: str) -> str:
    subjects, plots, _ = _MOVIE_KINDS[kind]
    return f"{r.choice(subjects)} {r.choice(plots)}."


def draw_input(rng: random.Random) -> tuple[str, str]:
    """(kind, description) of any kind: every user's preference covers every kind."""
    kind = rng.choice(sorted(_MOVIE_KINDS))
    return kind, _describe(rng, kind)


def answer(preference: dict[str, str], movie: tuple[str, str]) -> str:
    return preference[movie[0]]


def tags_user(rng: random.Random, shared: dict[str, str] | None = None) -> Draw:
    own = draw_preference(rng)  # drawn even when shared: the rest of the stream stays put
    preference = own if shared is None else shared
    kinds = rng.sample(sorted(_MOVIE_KINDS), 4)  # this user watches four kinds of movie

    def sample(r: random.Random) -> tuple[str, str]:
        kind = r.choice(kinds)
        text = _describe(r, kind)
        return text, answer(preference, (kind, text))

    return sample


GENERATOR = Generator("LaMP-2", same_shape("LaMP-2", tags_user), TASKS["LaMP-2"].labels,
                      draw_preference, draw_preference, draw_input, answer)

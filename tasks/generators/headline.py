"""LaMP-4 users: the latent preference is this user's headline style."""

from __future__ import annotations

import random
from collections.abc import Callable

from tasks.generators.user import Generator, preference_user

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


def draw_preference(rng: random.Random) -> str:
    """The name of a headline style (looked up when answering, so tests may swap styles)."""
    return rng.choice(sorted(_STYLES))


def draw_input(rng: random.Random) -> tuple[str, tuple[str, str, str], str]:
    """(actor, action, article text)."""
    actor, act, day = rng.choice(_ACTORS), rng.choice(_ACTIONS), rng.choice(_DAYS)
    text = (f"On {day} the {actor.lower()} {act[1]} the {act[2]} after a long public "
            f"meeting, officials said. {rng.randint(2, 9)} members spoke in favour.")
    return actor, act, text


def answer(style: str, article: tuple[str, tuple[str, str, str], str]) -> str:
    return _STYLES[style](article[0], article[1])


GENERATOR = Generator(
    "LaMP-4", preference_user("LaMP-4", draw_preference, draw_input, answer,
                              lambda article: article[2]),
    (), draw_preference, draw_preference, draw_input, answer)

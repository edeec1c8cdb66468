"""LaMP-4 users: the latent preference is this user's headline style."""

from __future__ import annotations

import random
from collections.abc import Callable

from tasks.generators.user import Draw

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


def headline_user(rng: random.Random) -> Draw:
    style = _STYLES[rng.choice(sorted(_STYLES))]

    def sample(r: random.Random) -> tuple[str, str]:
        actor, act, day = r.choice(_ACTORS), r.choice(_ACTIONS), r.choice(_DAYS)
        text = (f"On {day} the {actor.lower()} {act[1]} the {act[2]} after a long public "
                f"meeting, officials said. {r.randint(2, 9)} members spoke in favour.")
        return text, style(actor, act)

    return sample

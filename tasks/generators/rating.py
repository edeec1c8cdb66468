"""LaMP-3 users: the latent preference is a bias, harsh or generous, on the review's tone."""

from __future__ import annotations

import random

from tasks.generators.user import Generator, preference_user

_PRODUCTS = ("kettle", "backpack", "desk lamp", "phone case", "blender", "rain jacket",
             "office chair", "pair of headphones", "coffee grinder", "yoga mat")
_TONE = {
    1: ("Broke within a week and support never answered.", "A total waste of money."),
    2: ("Works, barely, and feels cheap in the hand.", "Disappointing for what it costs."),
    3: ("Does the job, nothing more.", "Some good points, some annoying ones."),
    4: ("Solid and well made, only small quibbles.", "Happy with it overall."),
    5: ("Excellent in every way, I would buy it again.", "Flawless, exceeded what I hoped."),
}


def draw_preference(rng: random.Random) -> int:
    """The bias added to the review's tone."""
    return rng.choice((-2, -1, -1, 0, 1, 1, 2))  # harsh to generous


def draw_input(rng: random.Random) -> tuple[int, str]:
    """(tone, review text)."""
    tone = rng.randint(1, 5)
    return tone, f"This {rng.choice(_PRODUCTS)}: {rng.choice(_TONE[tone])}"


def answer(bias: int, review: tuple[int, str]) -> str:
    return str(min(5, max(1, review[0] + bias)))


GENERATOR = Generator(
    "LaMP-3", preference_user("LaMP-3", draw_preference, draw_input, answer,
                              lambda review: review[1]),
    ("1", "2", "3", "4", "5"), draw_preference, draw_preference, draw_input, answer)

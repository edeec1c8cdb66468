"""LaMP-3 users: the latent preference is a bias, harsh or generous, on the review's tone."""

from __future__ import annotations

import random

from tasks.generators.user import Draw

_PRODUCTS = ("kettle", "backpack", "desk lamp", "phone case", "blender", "rain jacket",
             "office chair", "pair of headphones", "coffee grinder", "yoga mat")
_TONE = {
    1: ("Broke within a week and support never answered.", "A total waste of money."),
    2: ("Works, barely, and feels cheap in the hand.", "Disappointing for what it costs."),
    3: ("Does the job, nothing more.", "Some good points, some annoying ones."),
    4: ("Solid and well made, only small quibbles.", "Happy with it overall."),
    5: ("Excellent in every way, I would buy it again.", "Flawless, exceeded what I hoped."),
}


def rating_user(rng: random.Random) -> Draw:
    bias = rng.choice((-2, -1, -1, 0, 1, 1, 2))  # harsh to generous

    def sample(r: random.Random) -> tuple[str, str]:
        tone = r.randint(1, 5)
        text = f"This {r.choice(_PRODUCTS)}: {r.choice(_TONE[tone])}"
        return text, str(min(5, max(1, tone + bias)))

    return sample

"""The bundled generators, and whose preference each user of a population has (heterogeneity).

Heterogeneity h in [0, 1]: each user keeps the population's one preference with probability
1 - h, else has their own, drawn exactly as when every user has their own (h = 1). The whole
preference is shared or own, never part by part. A user's own stream is consumed the same
either way, so their inputs and topics do not depend on h; the population's preference and
each user's coin come from RNGs of their own, so h = 1 writes what it always wrote.
"""

from __future__ import annotations

import math
import random
from typing import Any

from tasks.generators import citation, headline, rating, tags, title, tweet
from tasks.generators.user import Generator

GENERATORS: dict[str, Generator] = {
    "tags": tags.GENERATOR,
    "rating": rating.GENERATOR,
    "headline": headline.GENERATOR,
    "citation": citation.GENERATOR,
    "title": title.GENERATOR,
    "tweet": tweet.GENERATOR,
}


def check_heterogeneity(heterogeneity: float) -> float:
    """Reject what is not a number in [0, 1] (nan included), naming the option."""
    ok = isinstance(heterogeneity, int | float) and not isinstance(heterogeneity, bool)
    if not ok or math.isnan(heterogeneity) or not 0.0 <= heterogeneity <= 1.0:
        raise ValueError(f"--heterogeneity must be a number in [0, 1] (1: every user has "
                         f"their own preference, 0: all share one), got {heterogeneity!r}")
    return float(heterogeneity)


def user_stream(generator: str, seed: int, user_index: int) -> random.Random:
    """The RNG a user's preference, profile and queries are drawn from."""
    return random.Random(f"{seed}/{generator}/{user_index}")


def population_preference(generator: str, seed: int) -> Any:
    """The one preference the users who do not have their own share."""
    draw = GENERATORS[generator].population_preference
    return draw(random.Random(f"{seed}/population/{generator}"))


def keeps_population(generator: str, seed: int, user_index: int, heterogeneity: float) -> bool:
    """Whether this user has the population's preference (probability 1 - h)."""
    if heterogeneity >= 1.0:  # no coin: `random() < 1` always, and 100k users stay fast
        return False
    coin = random.Random(f"{seed}/heterogeneity/{generator}/{user_index}")
    return coin.random() >= heterogeneity


def user_preference(generator: str, seed: int, user_index: int, heterogeneity: float,
                    population: Any) -> Any:
    """The preference user `user_index` answers with, as `make_benchmark` gives it."""
    if keeps_population(generator, seed, user_index, heterogeneity):
        return population
    return GENERATORS[generator].own_preference(user_stream(generator, seed, user_index))

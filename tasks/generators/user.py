"""What a synthetic user is, shared by every generator so `make_benchmark` can drive any."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, NamedTuple

from tasks.catalog import TASKS

# A user is two draws: one profile item (its LaMP fields, without id and date) and one
# query (the full LaMP `input`, the oracle answer). Where a profile item has the query's
# shape (LaMP-2/3/4/5), both come from one `sample(r) -> (input text, answer)`.
Draw = Callable[[random.Random], tuple[str, str]]
User = tuple[Callable[[random.Random], dict], Draw]
# A user factory: (the user's own stream, the population's preference to keep or None).
# It always draws the user's own preference first, so the rest of the stream (inputs,
# topics) is the same whichever preference the user ends up with.
MakeUser = Callable[[random.Random, Any], User]


class Generator(NamedTuple):
    """One synthetic task, with the preference kept apart from the inputs so a population
    can share it (`heterogeneity`) and the single-answer ceiling can compare users."""

    lamp_name: str
    user: MakeUser
    flip_labels: tuple[str, ...]  # labels `noise` may flip a gold to: () for free text
    own_preference: Callable[[random.Random], Any]  # the first draws of a user's stream
    population_preference: Callable[[random.Random], Any]  # the one a population shares
    draw_input: Callable[[random.Random], Any]  # a structured query input
    answer: Callable[[Any, Any], str | None]  # (preference, input) -> oracle; None: no answer


def same_shape(lamp_name: str, make_sample: Callable[[random.Random, Any], Draw]) -> MakeUser:
    """A user of a task whose profile items are (input, answer) pairs like its queries."""
    task = TASKS[lamp_name]
    x, y = task.item_fields

    def make_user(rng: random.Random, shared: Any = None) -> User:
        sample = make_sample(rng, shared)

        def item(r: random.Random) -> dict:
            text, answer = sample(r)
            return {x: text, y: answer}

        def query(r: random.Random) -> tuple[str, str]:
            text, answer = sample(r)
            return task.instruction + text, answer

        return item, query

    return make_user


def preference_user(lamp_name: str, draw_preference: Callable[[random.Random], Any],
                    draw_input: Callable[[random.Random], Any],
                    answer: Callable[[Any, Any], str], text: Callable[[Any], str]) -> MakeUser:
    """A user whose every example is one input drawn alike for all users, answered by the
    user's preference (rating, headline, title): `text(input)` is what the model reads."""

    def make_sample(rng: random.Random, shared: Any = None) -> Draw:
        own = draw_preference(rng)  # drawn even when shared: the rest of the stream stays put
        preference = own if shared is None else shared

        def sample(r: random.Random) -> tuple[str, str]:
            x = draw_input(r)
            return text(x), answer(preference, x)

        return sample

    return same_shape(lamp_name, make_sample)

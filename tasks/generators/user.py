"""What a synthetic user is, shared by every generator so `make_benchmark` can drive any."""

from __future__ import annotations

import random
from collections.abc import Callable

from tasks.catalog import TASKS

# A user is two draws: one profile item (its LaMP fields, without id and date) and one
# query (the full LaMP `input`, the oracle answer). Where a profile item has the query's
# shape (LaMP-2/3/4/5), both come from one `sample(r) -> (input text, answer)`.
Draw = Callable[[random.Random], tuple[str, str]]
User = tuple[Callable[[random.Random], dict], Draw]


def same_shape(lamp_name: str, make_sample: Callable[[random.Random], Draw]
               ) -> Callable[[random.Random], User]:
    """A user of a task whose profile items are (input, answer) pairs like its queries."""
    task = TASKS[lamp_name]
    x, y = task.item_fields

    def make_user(rng: random.Random) -> User:
        sample = make_sample(rng)

        def item(r: random.Random) -> dict:
            text, answer = sample(r)
            return {x: text, y: answer}

        def query(r: random.Random) -> tuple[str, str]:
            text, answer = sample(r)
            return task.instruction + text, answer

        return item, query

    return make_user

"""The style filter: a user's own answers pass, answers in another user's style do not."""

from __future__ import annotations

import random

from server.filters import filter_candidates
from server.style import form, in_style
from tasks import get_task
from tasks.generators import headline


def _answers(style: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [headline.answer(style, headline.draw_input(rng)) for _ in range(n)]


def test_form_reads_ending_colon_capitals_and_casing():
    assert form("Will the city council approve the plan?") == ("?", False, False, "sentence")
    assert form("BREAKING: City council cuts funding") == ("", True, True, "sentence")
    assert form("ALL CAPS HERE") == ("", False, True, "upper")
    assert form("all lower here.") == (".", False, False, "lower")
    assert form("Title Case Words") == ("", False, False, "title")


def test_each_headline_style_passes_its_own_seeds_and_fails_the_others():
    styles = sorted(headline._STYLES)
    for s in styles:
        seeds = _answers(s, 4, seed=1)
        for other in styles:
            got = [in_style(a, seeds) for a in _answers(other, 20, seed=2)]
            if other == s:
                assert all(got), s  # the user's own answers are never judged off-style
            elif (s, other) != ("colon", "local"):  # "Town: x by y" vs "Actor: x": one form
                assert not any(got), (s, other)


def test_the_filter_counts_off_style_candidates_only_when_asked():
    task = get_task("LaMP-4")
    seeds = [{"text": f"article {i} about the council", "title": t}
             for i, t in enumerate(_answers("question", 4, seed=3))]
    mine = [{"text": f"a new article {i} on buses and parks", "title": t}
            for i, t in enumerate(_answers("question", 3, seed=4))]
    other = [{"text": f"another article {i} on schools and trains", "title": t}
             for i, t in enumerate(_answers("breaking", 2, seed=5))]
    on = filter_candidates(task, mine + other, seeds, 0.8, style=True)
    off = filter_candidates(task, mine + other, seeds, 0.8)
    assert on.counts()["rejected_off_style"] == 2 and on.counts()["kept"] == 3
    assert off.counts()["rejected_off_style"] == 0 and off.counts()["kept"] == 5
    assert in_style("anything", [])  # no seed answers: nothing to judge by

"""The form of a generated answer, and whether a user's seeds show that form: the style
filter (`augment.style_filter`) for generation tasks.

A form is how the answer ends (?, !, . or nothing), whether it has a colon, whether it
opens with a word in capitals ("BREAKING"), and its casing (upper, lower, title or
sentence). A candidate's answer is in the user's style when its
form is one of its seeds' forms, it opens with the seeds' opening word where all of them
share one ("BREAKING", "Will"), and its length in words is within the seeds' range with
`slack` either side. The seeds are the user's own real answers, so a style they show is
one the user has; a form none of them shows is not evidence of the user.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_LETTERS = re.compile(r"[^\W\d_]+")


def form(text: str) -> tuple[str, bool, bool, str]:
    """(ending, has a colon, opens with a word in capitals, casing)."""
    t = text.strip()
    end = t[-1] if t and t[-1] in "?!." else ""
    words = [w for w in _LETTERS.findall(t) if len(w) > 1]
    shout = bool(words) and words[0].isupper() and t.startswith(words[0])
    if not words:
        case = "none"
    elif all(w.isupper() for w in words):
        case = "upper"
    elif all(w.islower() for w in words):
        case = "lower"
    elif all(w[0].isupper() for w in words):
        case = "title"
    else:
        case = "sentence"
    return end, ":" in t, shout, case


def _opener(text: str) -> str:
    parts = text.split()
    return parts[0].strip(":,.!?") if parts else ""


def in_style(text: str, seeds: Sequence[str], slack: float = 0.5) -> bool:
    """Whether `text` has a form, opening and length that the seed answers support."""
    seeds = [s for s in seeds if s.strip()]
    if not seeds:
        return True  # nothing to judge by (k = 0, or the answers were withheld)
    if form(text) not in {form(s) for s in seeds}:
        return False
    openers = {_opener(s) for s in seeds}
    if len(openers) == 1 and len(seeds) > 1 and _opener(text) not in openers:
        return False
    n, lengths = len(text.split()), [len(s.split()) for s in seeds]
    return min(lengths) * (1 - slack) <= n <= max(lengths) * (1 + slack)

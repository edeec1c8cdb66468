"""BM25 retrieval of a user's profile items for `profile_prompt` (no training)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from tasks.catalog import Task

_WORD = re.compile(r"\w+")


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def profile_prompt(task: Task, query: str, profile: Sequence[dict], k: int) -> str:
    """The query with the user's k most similar profile items (BM25) shown before it."""
    if k == 0 or not profile:
        return query
    from rank_bm25 import BM25Okapi

    fields = task.item_fields
    docs = [" ".join(str(it[f]) for f in fields) for it in profile]
    bm25 = BM25Okapi([_tokens(d) or ["_"] for d in docs])
    scores = bm25.get_scores(_tokens(query))
    top = sorted(range(len(profile)), key=lambda i: (-scores[i], i))[:k]
    if len(fields) == 2:
        shown = [f"{fields[0]}: {profile[i][fields[0]]}\n{fields[1]}: {profile[i][fields[1]]}"
                 for i in top]
    else:
        shown = [f"{fields[0]}: {profile[i][fields[0]]}" for i in top]
    return "Past examples from this user:\n" + "\n\n".join(shown) + "\n\n" + query

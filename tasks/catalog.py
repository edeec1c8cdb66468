"""The LaMP tasks the paper uses: prompts, profile -> training pairs, parsing and metrics.

Profile -> pair mappings (what each user's real training data is):
- LaMP-1 (citation): a query-shaped choice built from the user's own papers: the title of
  one paper, a second paper of the user as the related reference and a fixed off-topic
  title as the other; the correct position alternates. (LaMP's own PEFT baseline used a
  title -> abstract proxy instead.)
- LaMP-2 (movie tags): description -> tag.  LaMP-3: review text -> score.
- LaMP-4: article text -> headline.  LaMP-5: abstract -> title.
- LaMP-7 (tweet paraphrase): tweet completion (first half -> second half), LaMP's proxy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from tasks import metrics

MOVIE_TAGS = (
    "sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia",
    "dark comedy", "classic", "psychology", "fantasy", "romance", "thought-provoking",
    "social commentary", "violence", "true story",
)  # fmt: skip

# What a generated answer may open or close with: labels such as "Title:", quotes, spaces.
# Stripped as whole runs so parsing is idempotent ('Title: "Title: x"' -> 'x', not 'Title: x');
# the two alternatives start with different characters, so matching stays linear.
_ANSWER_LEAD = re.compile(r'(?:(?:headline|title|tweet|paraphrase)\s*:|["\s])*', re.I)
_ANSWER_TAIL = re.compile(r'["\s]*')  # matched on the reversed line: a `$` search is quadratic

# Off-topic titles for LaMP-1 pairs: device-local, so no other user's data is needed.
_OFF_TOPIC_TITLES = (
    "A History of Medieval Trade Routes",
    "Soil Moisture Dynamics in Alpine Meadows",
    "Ceramic Glazes of the Song Dynasty",
    "Migration Patterns of Arctic Terns",
    "Baroque Ornamentation in Organ Music",
    "Corrosion of Bronze in Marine Environments",
)


@dataclass(frozen=True)
class Example:
    """One (prompt, answer) pair; `fields` keeps the raw profile fields it came from."""

    prompt: str
    output: str
    fields: dict = field(default_factory=dict, compare=False)
    id: str = ""
    synthetic: bool = False


@dataclass(frozen=True)
class Task:
    """What one personalization task is: its prompt, fields, parsing and metrics."""

    name: str  # "LaMP-2"
    kind: Literal["classification", "rating", "generation"]
    item_fields: tuple[str, ...]  # profile item fields: (input, output) or (text,)
    instruction: str  # the query prefix; the item's input field follows
    labels: tuple[str, ...] = ()
    max_new_tokens: int = 16

    @property
    def lamp_id(self) -> str:
        return self.name.replace("-", "_")

    @property
    def metric_names(self) -> tuple[str, ...]:
        return {
            "classification": ("accuracy", "f1"),
            "rating": ("mae", "rmse"),
            "generation": ("rouge-1", "rouge-L"),
        }[self.kind]

    @property
    def answer_field(self) -> str | None:
        """The profile-item field that is the query's answer; None where the pair is built
        from the item instead (LaMP-1 citation choices, LaMP-7 tweet completion)."""
        if self.name in ("LaMP-1", "LaMP-7"):
            return None
        return self.item_fields[1]

    @property
    def higher_is_better(self) -> bool:
        return self.kind != "rating"

    # --- profile items -> training pairs -------------------------------------------------
    def profile_pairs(self, items: Sequence[dict], synthetic: bool = False) -> list[Example]:
        """Turn profile-shaped items (real or synthetic) into query-shaped training pairs."""
        if self.name == "LaMP-1":
            return self._citation_pairs(items, synthetic)
        if self.name == "LaMP-7":
            return self._completion_pairs(items, synthetic)
        x, y = self.item_fields
        return [
            Example(self.instruction + str(it[x]), str(it[y]), dict(it), str(it.get("id", "")),
                    synthetic)
            for it in items
        ]

    def _citation_pairs(self, items: Sequence[dict], synthetic: bool) -> list[Example]:
        out = []
        if len(items) < 2:
            return out
        for i, it in enumerate(items):
            related = items[(i + 1) % len(items)]["title"]
            other = _OFF_TOPIC_TITLES[i % len(_OFF_TOPIC_TITLES)]
            first, second, gold = (related, other, "[1]") if i % 2 == 0 else (other, related, "[2]")
            prompt = self.instruction.format(title=it["title"]) + f' [1]: "{first}" [2]: "{second}"'
            out.append(Example(prompt, gold, dict(it), str(it.get("id", "")), synthetic))
        return out

    def _completion_pairs(self, items: Sequence[dict], synthetic: bool) -> list[Example]:
        out = []
        for it in items:
            words = str(it["text"]).split()
            if len(words) < 4:
                continue
            cut = len(words) // 2
            out.append(Example(
                "Complete the following tweet: " + " ".join(words[:cut]),
                " ".join(words[cut:]), dict(it), str(it.get("id", "")), synthetic,
            ))
        return out

    # --- outputs -------------------------------------------------------------------------
    def parse(self, text: str) -> str:
        """Canonical prediction from raw model output (robust to chatter around it)."""
        text = (text or "").strip()
        if self.kind == "classification":
            low = text.lower()
            for label in self.labels:  # exact first
                if low == label.lower():
                    return label
            if self.name == "LaMP-1":
                m = re.search(r"\[?([12])\]?", text)
                return f"[{m.group(1)}]" if m else text
            hits = [(low.find(lab.lower()), -len(lab), lab) for lab in self.labels
                    if lab.lower() in low]
            return min(hits)[2] if hits else text
        if self.kind == "rating":
            m = re.match(r"^\s*([1-5](?:\.\d+)?)\b", text) or re.search(r"\b([1-5])\b", text)
            return m.group(1) if m else text  # unparsable: scored as the worst rating
        first = next((line for line in text.splitlines() if line.strip()), "")
        first = first[_ANSWER_LEAD.match(first).end():]
        return first[: len(first) - _ANSWER_TAIL.match(first[::-1]).end()]

    def is_valid_output(self, text: str) -> bool:
        """Whether a (synthetic) answer is well-formed for this task."""
        if self.kind == "classification":
            return text in self.labels
        if self.kind == "rating":
            return text in ("1", "2", "3", "4", "5")
        return 0 < len(text.split()) <= 40

    def score(self, preds: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
        """The task's metrics on already-parsed predictions, with LaMP's semantics."""
        if self.kind == "classification":
            return {
                "accuracy": metrics.accuracy(preds, golds),
                "f1": metrics.macro_f1(preds, golds, self.labels),
            }
        if self.kind == "rating":
            return {"mae": metrics.mae(preds, golds), "rmse": metrics.rmse(preds, golds)}
        return metrics.rouge(preds, golds)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "LaMP-1", "classification", ("title", "abstract"),
            'For an author who has written the paper with the title "{title}", which reference'
            " is related? Just answer with [1] or [2] without explanation.",
            labels=("[1]", "[2]"), max_new_tokens=4,
        ),
        Task(
            "LaMP-2", "classification", ("description", "tag"),
            "Which tag does this movie relate to among the following tags? Just answer with the"
            f" tag name without further explanation. tags: [{', '.join(MOVIE_TAGS)}]"
            " description: ",
            labels=MOVIE_TAGS, max_new_tokens=8,
        ),
        Task(
            "LaMP-3", "rating", ("text", "score"),
            "What is the score of the following review on a scale of 1 to 5? just answer with"
            " 1, 2, 3, 4, or 5 without further explanation. review: ",
            max_new_tokens=3,
        ),
        Task("LaMP-4", "generation", ("text", "title"),
             "Generate a headline for the following article: ", max_new_tokens=24),
        Task("LaMP-5", "generation", ("abstract", "title"),
             "Generate a title for the following abstract of a paper: ", max_new_tokens=24),
        Task("LaMP-7", "generation", ("text",),
             "Paraphrase the following tweet without any explanation before or after it: ",
             max_new_tokens=40),
    )
}

_ALIASES = {t.lamp_id: n for n, t in TASKS.items()} | {
    n.lower(): n for n in TASKS
} | {n.lower().replace("lamp-", ""): n for n in TASKS}


def get_task(name: str) -> Task:
    """Look a task up by 'LaMP-2', 'LaMP_2', 'lamp-2' or '2'."""
    key = _ALIASES.get(name) or _ALIASES.get(str(name).lower())
    if key is None:
        raise ValueError(f"unknown task '{name}': use one of {', '.join(TASKS)}")
    return TASKS[key]

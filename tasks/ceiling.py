"""How much a task rewards personalization: the best one answer for everyone vs the oracle.

A population of users (at a heterogeneity h) all get the same query inputs; each user's
oracle answer comes from their preference. The best single-answer policy answers each input
with the one answer, among those the users give it, that scores best against every user's
oracle answer (per metric: highest, or lowest for MAE/RMSE). Its score is what a shared,
non-personalised model can reach at most; the gap to the oracle is what personalization
can add. Exact for the metrics that are means over examples (accuracy, MAE, ROUGE; RMSE too,
each input having as many answers); macro-F1 does not split by input, so its policy is the
per-input F1-best answer (the majority label), scored as a whole. Labels and ratings are
scored with the task's own `score`; ROUGE with the same formulas, faster (see below).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from rouge_score import scoring
from rouge_score.tokenizers import DefaultTokenizer

from tasks.catalog import Task, get_task
from tasks.population import (
    GENERATORS,
    check_heterogeneity,
    population_preference,
    user_preference,
)

_TOKENIZER = DefaultTokenizer(use_stemmer=False)  # what tasks.metrics.rouge's scorer uses


def single_answer_ceiling(generator: str, heterogeneity: float, users: int = 256,
                          seed: int = 0, inputs: int = 32) -> dict:
    """The best single-answer policy's score and the oracle's, per task metric.

    Users are the first `users` of a `make_benchmark(generator, ..., seed=seed,
    heterogeneity=heterogeneity)` population; the inputs are drawn from their own RNG.
    Citation users answer only queries with a reference in the sub-topic they cite (the
    only ones they are asked); every other generator's users answer every input.
    """
    heterogeneity = check_heterogeneity(heterogeneity)
    if generator not in GENERATORS:
        raise ValueError(f"generator '{generator}' is not one of {', '.join(GENERATORS)}")
    if users < 1 or inputs < 1:
        raise ValueError(f"users and inputs must be at least 1, got {users} and {inputs}")
    spec = GENERATORS[generator]
    task = get_task(spec.lamp_name)
    population = population_preference(generator, seed)
    preferences = [user_preference(generator, seed, u, heterogeneity, population)
                   for u in range(users)]
    rng = random.Random(f"{seed}/ceiling/{generator}")
    answers_by_input = []
    for _ in range(inputs):
        query = spec.draw_input(rng)
        answers = [spec.answer(p, query) for p in preferences]
        answers_by_input.append([a for a in answers if a is not None])
    live = [answers for answers in answers_by_input if answers]
    if not live:
        raise ValueError(f"no {generator} user answers any of {inputs} inputs: use more users")
    ceiling = _rouge_ceiling if task.kind == "generation" else _label_ceiling
    single, oracle = ceiling(task, live)
    return {"generator": generator, "task": task.lamp_id, "heterogeneity": heterogeneity,
            "seed": seed, "users": users, "inputs": inputs,
            "answers": sum(len(answers) for answers in live),
            "single_answer": {m: round(v, 6) for m, v in single.items()},
            "oracle": {m: round(v, 6) for m, v in oracle.items()}}


Scores = dict[str, float]


def _best(task: Task, scores: Sequence[float]) -> int:
    """The index of the best score; ties to the first (candidates are sorted)."""
    sign = 1 if task.higher_is_better else -1
    return max(range(len(scores)), key=lambda i: (sign * scores[i], -i))


def _label_ceiling(task: Task, answers_by_input: list[list[str]]) -> tuple[Scores, Scores]:
    """Labels and ratings: few candidates an input, so task.score rates each one."""
    golds = [a for answers in answers_by_input for a in answers]
    preds: dict[str, list[str]] = {m: [] for m in task.metric_names}
    for answers in answers_by_input:
        candidates = sorted(set(answers))
        scores = [task.score([c] * len(answers), answers) for c in candidates]
        for metric in task.metric_names:
            best = candidates[_best(task, [s[metric] for s in scores])]
            preds[metric] += [best] * len(answers)
    single = {m: task.score(preds[m], golds)[m] for m in task.metric_names}
    return single, task.score(golds, golds)


def _rouge_ceiling(task: Task, answers_by_input: list[list[str]]) -> tuple[Scores, Scores]:
    """Free text: ROUGE is a mean over pairs, so the policy's score is the answer-weighted
    mean of each input's best candidate mean, exactly."""
    total = sum(len(answers) for answers in answers_by_input)
    single = dict.fromkeys(task.metric_names, 0.0)
    oracle = dict.fromkeys(task.metric_names, 0.0)
    texts: dict[str, _Tokens] = {}
    for answers in answers_by_input:
        candidates = sorted(set(answers))
        means = _rouge_means(candidates, answers, texts)
        for metric, scores in means.items():
            single[metric] += len(answers) * scores[_best(task, scores)] / total
        for answer in answers:  # 1.0 unless an answer has no word
            for metric, value in zip(means, texts[answer].rouge(texts[answer])):
                oracle[metric] += value / total
    return single, oracle


# --- ROUGE for many pairs -------------------------------------------------------------------
# task.score (tasks.metrics.rouge) costs ~80 us a pair, rouge_score's LCS being a Python
# table; a tweet input at h = 1 has as many distinct answers as users, so users^2 pairs
# (~3 s for 64 users x 16 inputs). These are the same F-measures, from rouge_score's own
# tokenizer and formulas, with a bit-parallel LCS and each pair once (both F are symmetric);
# tests/test_heterogeneity.py checks them against task.score.
def _rouge_means(candidates: Sequence[str], golds: Sequence[str], texts: dict[str, _Tokens]
                 ) -> dict[str, list[float]]:
    """Mean ROUGE-1 and ROUGE-L F-measure of each candidate against all golds."""
    counts = Counter(golds)
    for text in set(candidates) | set(counts):
        if text not in texts:
            texts[text] = _Tokens(text)
    pair: dict[tuple[str, str], tuple[float, float]] = {}
    r1, rl = [], []
    for c in candidates:
        total1 = total_l = 0.0
        for g, n in counts.items():
            key = (c, g) if c <= g else (g, c)
            if key not in pair:
                pair[key] = texts[key[0]].rouge(texts[key[1]])
            total1 += n * pair[key][0]
            total_l += n * pair[key][1]
        r1.append(total1 / len(golds))
        rl.append(total_l / len(golds))
    return {"rouge-1": r1, "rouge-L": rl}


class _Tokens:
    """One text's tokens, unigrams and per-token position bits (for the LCS)."""

    def __init__(self, text: str) -> None:
        self.tokens = _TOKENIZER.tokenize(text)
        # A multiset as a set of (token, k-th occurrence): intersecting two is what ROUGE-1
        # counts (the smaller count of each token), as one set operation.
        self.unigrams = frozenset((t, k) for t, n in Counter(self.tokens).items()
                                  for k in range(n))
        self.positions: dict[str, int] = {}
        for i, token in enumerate(self.tokens):
            self.positions[token] = self.positions.get(token, 0) | (1 << i)

    def rouge(self, other: _Tokens) -> tuple[float, float]:
        """(ROUGE-1, ROUGE-L) F-measure, as rouge_score computes them."""
        if not self.tokens or not other.tokens:
            return 0.0, 0.0
        overlap = len(self.unigrams & other.unigrams)  # sum of min counts, in C
        lcs = self.lcs_length(other.tokens)
        mine, theirs = len(self.tokens), len(other.tokens)
        return (scoring.fmeasure(overlap / theirs, overlap / mine),
                scoring.fmeasure(lcs / theirs, lcs / mine))

    def lcs_length(self, other: Sequence[str]) -> int:
        """Longest common subsequence with `other`, a machine word op per token (Hyyro)."""
        full = (1 << len(self.tokens)) - 1
        v = full
        for token in other:
            u = v & self.positions.get(token, 0)
            v = ((v + u) | (v - u)) & full
        return len(self.tokens) - v.bit_count()

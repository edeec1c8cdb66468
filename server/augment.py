"""Cloud augmentation: n candidates per user from their seeds, batched across users."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from server.backends import CloudError, CloudLLM
from server.faults import FaultyCloud
from server.filters import FilterResult, filter_candidates, normalise_output, total_counts
from server.prompts import augmentation_prompt, parse_candidate, relabel_prompt
from server.settings import AugmentSettings, CloudFaults
from tasks.catalog import Task
from tasks.metrics import rouge
from tasks.seeding import user_seed

log = logging.getLogger(__name__)


@dataclass
class AugmentReport:
    per_user: dict[str, dict[str, int]]  # filter counts of users whose augmentation completed
    seconds: float
    errors: dict[str, dict[str, int]] = field(default_factory=dict)  # user -> cause -> count

    def totals(self) -> dict[str, int]:
        return total_counts(self.per_user)


def augment(
    llm: CloudLLM,
    task: Task,
    seeds: Mapping[str, Sequence[dict]],
    settings: AugmentSettings,
    seed: int,
    attempt: int = 0,
    faults: CloudFaults | None = None,
    focus: Mapping[str, Sequence[dict]] | None = None,
    round_: int = 0,
    together: Mapping[str, str] | None = None,
) -> tuple[dict[str, list[dict]], AugmentReport]:
    """Synthetic examples for every user in `seeds`, with per-user filter counts.

    With `focus` (active augmentation), a user's prompts hold only its focus seeds (those
    its device fits worst) while the filters still check against all its seeds; `round_`
    > 0 draws other prompts and samples than round 0 (each round its own user seed).
    `together` maps users to a batch name: users with the same name share the cloud's
    batches (a SuperNode's users), each still drawing from its own seed; without it each
    user is batched alone.

    All users' prompts go to the backend in one call, so the embedded model batches
    across users and an HTTP backend keeps `concurrency` requests in flight. A user any
    of whose requests failed gets no synthetic data (their augmentation is incomplete) and
    appears in `report.errors` with the failures by cause, never as rejected candidates.
    """
    start = time.perf_counter()
    users = sorted(seeds)
    # a user's prompts and sampling depend on the run's seed and the user alone, never on
    # who else is augmented in the same call: a retried, resumed or streamed user gets
    # the same synthetic data as in an undisturbed run
    prompts, owners, prompt_seeds = [], [], []
    two_step = settings.two_step and task.answer_field is not None
    key = _batch_keys(users, seed, round_, together)
    for uid in users:
        own = user_seed(seed, uid if not round_ else f"{uid}/round-{round_}")
        shown = focus[uid] if focus and focus.get(uid) else seeds[uid]
        for c in range(settings.n):
            prompts.append(augmentation_prompt(task, shown, own * 1_000_003 + c))
            owners.append(uid)
            prompt_seeds.append(own)
    errors: dict[str, Counter] = {}
    cloud = FaultyCloud(llm, faults, seed, owners, attempt) if faults and faults.active else llm
    texts = cloud.complete(prompts, prompt_seeds, **_keys(key, owners)) if prompts else []
    candidates: dict[str, list[dict | None]] = {uid: [] for uid in users}
    for uid, text in zip(owners, texts):
        if isinstance(text, CloudError):
            errors.setdefault(uid, Counter())[text.cause] += 1
        else:
            candidates[uid].append(parse_candidate(task, text, input_only=two_step))
    if two_step:
        _answer(llm, task, seeds, candidates, dict(zip(owners, prompt_seeds)), errors, key)
    results: dict[str, FilterResult] = {
        uid: filter_candidates(task, candidates[uid], seeds[uid], settings.near_duplicate,
                               settings.style_filter, settings.filters)
        for uid in users if uid not in errors
    }
    if settings.consistency and task.answer_field is not None:
        _consistency(llm, task, seeds, results, seed, errors, settings.consistency_rouge, key)
    out: dict[str, list[dict]] = {}
    for uid, res in results.items():
        if uid not in errors:
            out[uid] = res.kept[: settings.max_kept] if settings.max_kept else res.kept
    report = AugmentReport({uid: r.counts() for uid, r in results.items() if uid in out},
                           time.perf_counter() - start,
                           {uid: dict(c) for uid, c in sorted(errors.items())})
    log.info("augmented %d users: %s in %.1f s%s", len(out), report.totals(), report.seconds,
             f"; {len(errors)} users failed (cloud errors)" if errors else "")
    return out, report


def _batch_keys(users: Sequence[str], seed: int, round_: int,
                together: Mapping[str, str] | None) -> dict[str, int] | None:
    """Each user's batch key (its batch name's, under the run's seed and round), or None:
    every user batched alone, under its own seed."""
    if together is None:
        return None
    suffix = f"/round-{round_}" if round_ else ""
    return {u: user_seed(seed, f"batch/{together.get(u, u)}{suffix}") for u in users}


def _keys(key: Mapping[str, int] | None, owners: Sequence[str]) -> dict:
    """complete()'s batch keys for these prompts' owners; none when each user is its
    own group (what every backend does by its seeds)."""
    return {} if key is None else {"batch": [key[u] for u in owners]}


def _reanswer(llm: CloudLLM, task: Task, seeds: Mapping[str, Sequence[dict]],
              jobs: Sequence[tuple[str, dict, int]], errors: dict[str, Counter],
              key: Mapping[str, int] | None = None) -> list[str | None]:
    """The cloud's greedy few-shot answer to each (user, item, group seed)'s input, from all
    the user's seeds (the relabel prompt): its first line, or None where the request
    failed (counted in `errors` by cause). An answer is one short line (a label, a
    headline): the task's own length is enough."""
    prompts = [relabel_prompt(task, seeds[uid], item) for uid, item, _ in jobs]
    answers = llm.complete(prompts, [g for _, _, g in jobs], greedy=True,
                           max_new_tokens=task.max_new_tokens,
                           **_keys(key, [uid for uid, _, _ in jobs])) if prompts else []
    out: list[str | None] = []
    for (uid, _, _), ans in zip(jobs, answers):
        if isinstance(ans, CloudError):
            errors.setdefault(uid, Counter())[ans.cause] += 1
            out.append(None)
        else:
            out.append(ans.strip().splitlines()[0] if ans.strip() else "")
    return out


def _answer(llm: CloudLLM, task: Task, seeds: Mapping[str, Sequence[dict]],
            candidates: dict[str, list[dict | None]], group_seed: Mapping[str, int],
            errors: dict[str, Counter], key: Mapping[str, int] | None = None) -> None:
    """Two-step generation's second step: each written input's answer is the cloud's
    re-answer, not the one it wrote beside it. An empty answer leaves the candidate
    unparsable."""
    jobs = [(uid, i) for uid, cs in candidates.items() if uid not in errors
            for i, c in enumerate(cs) if c is not None]
    answers = _reanswer(llm, task, seeds,
                        [(uid, candidates[uid][i], group_seed[uid]) for uid, i in jobs], errors,
                        key)
    for (uid, i), first in zip(jobs, answers):
        if first is not None:
            first = first.strip()
            candidates[uid][i] = {**candidates[uid][i], task.answer_field: first} \
                if first else None


def _consistency(llm: CloudLLM, task: Task, seeds: Mapping[str, Sequence[dict]],
                 results: dict[str, FilterResult], seed: int,
                 errors: dict[str, Counter], min_rouge: float = 0.3,
                 key: Mapping[str, int] | None = None) -> None:
    """Re-answer each kept candidate greedily from the seeds; drop those that disagree.

    Labels and ratings must match exactly; a generated output (a headline, a title) must
    reach `min_rouge` ROUGE-L against the cloud's own answer in the user's style.
    """
    y = task.answer_field
    jobs = [(uid, i) for uid, r in results.items() if seeds[uid] for i in range(len(r.kept))]
    answers = _reanswer(llm, task, seeds, [(uid, results[uid].kept[i], user_seed(seed, uid))
                                           for uid, i in jobs], errors, key)
    drop: dict[str, set[int]] = {}
    for (uid, i), first in zip(jobs, answers):
        if first is None:
            continue
        kept = results[uid].kept[i][y]
        if task.kind == "generation":
            agree = rouge([task.parse(first)], [kept])["rouge-L"] >= min_rouge
        else:
            agree = normalise_output(task, {y: first})[y] == kept
        if not agree:
            drop.setdefault(uid, set()).add(i)
    for uid, idx in drop.items():
        r = results[uid]
        r.rejected["inconsistent"] += len(idx)
        r.kept = [c for i, c in enumerate(r.kept) if i not in idx]

"""cloud: the cloud LLM answers each user's queries itself, with profile prompting. The
prompts go up, the answers come down, and the device scores them against its own golds
(which never leave it)."""

from __future__ import annotations

import json

from flwr.app import ConfigRecord
from flwr.serverapp import Grid

from strategies.exchange import RunStopped
from strategies.methods.base import Coordinator, Method, MethodResult, metrics_of
from strategies.replies import Items, View


def parse_prompts(view: View) -> Items:
    items = json.loads(str(view.content["meta"]["items"]))
    if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
        raise ValueError("prompts are not a list of strings")
    return Items(items, {"prompt": sum(len(p.encode()) for p in items)})


def run(s: Coordinator, grid: Grid, method: str, users: list[str], attempt: int, last: bool,
        result: MethodResult) -> dict[str, str]:
    prompts: dict[str, list[str]] = {}

    def commit(view: View, got: Items) -> None:
        prompts[view.user] = got.items

    msgs = s.messages(users, "query.prompts", method, attempt)
    failed = s.exchange(grid, msgs, method, attempt, parse_prompts, commit)
    asked = sorted(prompts)
    flat = [p for u in asked for p in prompts[u]]
    owners = [u for u in asked for _ in prompts[u]]  # each user's answers are its own batch
    answers = s.services.answer(flat, owners) if flat else []
    if s.should_stop():  # answers the stop cut short are not the cloud's failures
        raise RunStopped("stopped while the cloud answered")
    by_user: dict[str, list] = {}
    i = 0
    for u in asked:
        by_user[u] = answers[i: i + len(prompts[u])]
        i += len(prompts[u])
    send = []
    for u in users:
        if u not in by_user:
            continue
        errors: dict[str, int] = {}
        for a in by_user[u]:
            if not isinstance(a, str):
                errors[a.cause] = errors.get(a.cause, 0) + 1
        if errors:
            s.cloud_failed(method, u, "answers", errors, attempt, failed)
            continue
        send.append(u)
    msgs = s.messages(send, "evaluate", method, attempt, lambda u: {
        "answers": ConfigRecord({"items": json.dumps(by_user[u])})})
    if msgs:
        failed.update(s.exchange(grid, msgs, method, attempt, metrics_of,
                                 lambda view, m: s.store(method, view.user, m, result)))
    return failed


METHOD = Method(
    name="cloud", run=run, kinds=("query.prompts", "evaluate"),
    traffic="every prompt up, every answer down (golds stay on the device)", uses_cloud=True)

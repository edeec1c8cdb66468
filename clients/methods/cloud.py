"""cloud on the device: the user's queries, with retrieved profile items, go up to the
cloud LLM; its answers come down and are scored here against golds that never leave."""

from __future__ import annotations

import json
import time

from flwr.app import Message

from clients.device import held_out, write_predictions
from clients.methods.base import each, own_items
from clients.protocol import Out, Request, Results
from clients.retrieval import profile_prompt
from clients.settings import DeviceSettings
from tasks import Task, UserData


def cloud_prompts(task: Task, user: UserData, settings: DeviceSettings) -> list[str]:
    """The user's held-out queries with BM25-retrieved profile items: what goes up."""
    return [profile_prompt(task, q.prompt, user.profile, settings.eval.profile_k)
            for q in held_out(user, settings)]


def score_answers(task: Task, user: UserData, settings: DeviceSettings, method: str,
                  run_dir: str | None, answers: list[str]) -> dict[str, float]:
    """Score the cloud's answers on the device, against golds that never left it."""
    queries = user.queries[: len(answers)]
    if len(answers) != len(cloud_prompts(task, user, settings)):
        raise ValueError(f"got {len(answers)} answers for {len(queries)} queries")
    start = time.perf_counter()
    preds = [task.parse(a) for a in answers]
    metrics = task.score(preds, [q.output for q in queries])
    if run_dir is not None:
        write_predictions(run_dir, method, user, queries, answers, preds)
    return {**metrics, "num-queries": len(queries), "num-examples": len(queries),
            "score-seconds": time.perf_counter() - start}


def query_prompts(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    def one(user: UserData) -> Out:
        prompts = cloud_prompts(task, user, req.device)
        return Out({"num-queries": len(prompts)}, {"items": json.dumps(prompts)})

    return each(users, one)


def evaluate_answers(msg: Message, req: Request, task: Task, users: list[UserData]
                     ) -> Results:
    return each(users, lambda user: Out(score_answers(
        task, user, req.device, req.method, req.run_dir, own_items(msg, "answers", user)),
        {"method": req.method}))


HANDLERS = {"query.prompts": query_prompts, "evaluate": evaluate_answers}

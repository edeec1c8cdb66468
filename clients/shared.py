"""The device's side of the shared baselines: shared_lora, fedavg_lora and cloud.

Unlike cdcda, these move more than metrics: shared_lora uploads the user's real examples
and receives one adapter trained on everyone's; fedavg_lora receives the global adapter,
trains it on the user's real data and sends it back; cloud uploads the user's prompts
and scores the cloud's answers here, so golds never leave the device.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from clients import cohort
from clients.cohort_trainer import CohortJob
from clients.device import DeviceRuntime, evaluate_users, write_predictions
from clients.retrieval import profile_prompt
from clients.settings import DeviceSettings
from clients.trainer import TrainReport
from tasks import Task, UserData


def adapter_state(rt: DeviceRuntime) -> dict[str, torch.Tensor]:
    """A copy of the LoRA weights in the device's adapter slot, by peft's state-dict names
    (a copy: the slot is re-used for the next user)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in
            get_peft_model_state_dict(rt.model).items()}


def load_adapter_state(rt: DeviceRuntime, state: dict[str, torch.Tensor]) -> None:
    """Put received LoRA weights into the device's adapter slot (names must all match)."""
    from peft import set_peft_model_state_dict

    own = adapter_state(rt)
    if set(state) != set(own):
        missing = sorted(set(own) - set(state))[:3]
        extra = sorted(set(state) - set(own))[:3]
        raise ValueError(f"received adapter does not fit this device's LoRA slot "
                         f"(missing {missing}, unexpected {extra}): same device.lora needed")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"received adapter tensor {k} has shape {tuple(v.shape)}, "
                             f"this device expects {tuple(own[k].shape)}")
    set_peft_model_state_dict(rt.model, state)


def shared_examples(task: Task, user: UserData) -> list[dict]:
    """All of the user's real examples, reduced to the task's fields (shared_lora's upload)."""
    return [{f: str(it[f]) for f in task.item_fields} for it in user.profile]


def train_global(rt: DeviceRuntime, task: Task, user: UserData, settings: DeviceSettings,
                 state: dict[str, torch.Tensor], local_steps: int, seed: int
                 ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """One FedAvg round on this device: the global adapter, trained on the real data."""
    return train_global_users(rt, task, [user], settings, state, local_steps,
                              {user.user_id: seed})[user.user_id]


def train_pooled(rt: DeviceRuntime, task: Task, examples: list, settings: DeviceSettings,
                 seed: int) -> tuple[dict[str, torch.Tensor], TrainReport]:
    """shared_lora's one adapter, trained on everyone's pooled examples (a cohort of one)."""
    trained = cohort.train(rt, [CohortJob(examples, seed=seed, init_seed=seed)], settings)
    trained.stack.to_slot(0)
    return adapter_state(rt), trained.reports[0]


def cloud_prompts(task: Task, user: UserData, settings: DeviceSettings) -> list[str]:
    """The user's held-out queries with BM25-retrieved profile items: what goes to the cloud."""
    queries = user.queries[: settings.eval.max_queries] if settings.eval.max_queries \
        else user.queries
    return [profile_prompt(task, q.prompt, user.profile, settings.eval.profile_k)
            for q in queries]


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


def train_global_users(rt: DeviceRuntime, task: Task, users: list[UserData],
                       settings: DeviceSettings, state: dict[str, torch.Tensor],
                       local_steps: int, seeds: dict[str, int]
                       ) -> dict[str, tuple[dict[str, torch.Tensor], dict[str, float]]]:
    """One FedAvg round for a cohort: each user trains the global adapter on its own data,
    all of them together through the cohort trainer."""
    train = dataclasses.replace(settings.train, steps=local_steps) if local_steps else \
        settings.train
    settings = dataclasses.replace(settings, train=train)
    reals = [task.profile_pairs(u.profile) for u in users]
    jobs = [CohortJob(real, seed=seeds[u.user_id], init_state=state)
            for u, real in zip(users, reals)]
    trained = cohort.train(rt, jobs, settings)
    out = {}
    for k, (u, real, report) in enumerate(zip(users, reals, trained.reports)):
        trained.stack.to_slot(k)
        out[u.user_id] = (adapter_state(rt), {
            "num-examples": len(real), "train-steps": report.steps,
            "train-tokens": report.tokens, "train-seconds": report.seconds,
            "last-loss": report.losses[-1] if report.losses else 0.0})
    return out


def evaluate_with_users(rt: DeviceRuntime, task: Task, users: list[UserData],
                        settings: DeviceSettings, method: str, run_dir: str | None,
                        state: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Evaluate a cohort's queries with one received adapter (shared_lora, fedavg_lora),
    all users' queries in shared batches."""
    load_adapter_state(rt, state)
    metrics = evaluate_users(rt, task, users, settings, method, run_dir, use_adapter=True)
    size = sum(v.numel() * v.element_size() for v in state.values())
    return {uid: {**m, "adapter-bytes": size} for uid, m in metrics.items()}

"""fedavg_lora on the device: each round, the global adapter comes down, is trained on the
user's real data for `local-steps` steps and goes back up (the only reply that carries
arrays); at the end the final global adapter is evaluated here."""

from __future__ import annotations

import dataclasses

import torch
from flwr.app import ArrayRecord, Message

from clients import cohort, device
from clients.adapter_slot import adapter_state
from clients.cohort_trainer import CohortJob
from clients.device import DeviceRuntime
from clients.methods.base import evaluate_received, together
from clients.protocol import Out, Request, Results
from clients.settings import DeviceSettings
from tasks import Task, UserData


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


def train_round(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    def work() -> dict[str, Out]:
        rt = device.runtime(req.device)
        state = msg.content["arrays"].to_torch_state_dict()
        seeds = {u.user_id: device.user_seed(req.seed * 1000 + req.round, u.user_id)
                 for u in users}
        got = train_global_users(rt, task, users, req.device, state, req.local_steps, seeds)
        return {uid: Out(m, {"method": req.method}, ArrayRecord(torch_state_dict=new))
                for uid, (new, m) in got.items()}

    return together(users, work)


HANDLERS = {"train": train_round, "evaluate": evaluate_received}

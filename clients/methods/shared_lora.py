"""shared_lora on the device: every real example goes up (centralised training, not
private); the one adapter trained on the pool comes down and is evaluated here.

`train_pooled` is the server's half, run in the driver on the device model: one adapter
trained on everyone's pooled examples, as a cohort of one.
"""

from __future__ import annotations

import json

import torch
from flwr.app import Message

from clients import cohort
from clients.adapter_slot import adapter_state
from clients.cohort_trainer import CohortJob
from clients.device import DeviceRuntime, NonFiniteAdapter
from clients.methods.base import each, evaluate_received
from clients.protocol import Out, Request, Results
from clients.settings import DeviceSettings
from clients.trainer import TrainReport
from tasks import Task, UserData


def shared_examples(task: Task, user: UserData) -> list[dict]:
    """All of the user's real examples, reduced to the task's fields (the upload)."""
    return [{f: str(it[f]) for f in task.item_fields} for it in user.profile]


def query_data(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    def one(user: UserData) -> Out:
        items = shared_examples(task, user)
        return Out({"num-examples": len(items)}, {"items": json.dumps(items)})

    return each(users, one)


def train_pooled(rt: DeviceRuntime, task: Task, examples: list, settings: DeviceSettings,
                 seed: int) -> tuple[dict[str, torch.Tensor], TrainReport]:
    """The one adapter, trained on everyone's pooled examples (a cohort of one)."""
    trained = cohort.train(rt, [CohortJob(examples, seed=seed, init_seed=seed)], settings)
    if trained.reports[0].diverged:
        raise NonFiniteAdapter("the pooled adapter's training diverged (a loss went NaN or "
                               "inf): lower device.train.lr")
    trained.stack.to_slot(0)
    return adapter_state(rt), trained.reports[0]


HANDLERS = {"query.data": query_data, "evaluate": evaluate_received}

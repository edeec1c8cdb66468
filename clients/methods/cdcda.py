"""cdcda on the device: seeds go up under the disclosure policy; the user's own LoRA is
trained on real + the cloud's synthetic examples, kept in `adapters/`; metrics only go back."""

from __future__ import annotations

import json

from flwr.app import Message

from clients import device
from clients.methods.base import each, train_own
from clients.protocol import Out, Request, Results
from clients.seeds import disclose_seeds
from tasks import Task, UserData


def query_seeds(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    """Up to k seed examples per user under the disclosure policy, enforced here on the
    device: k, which fields may leave, and optional scrubbing (k = 0 sends none)."""

    def one(user: UserData) -> Out:
        chosen = disclose_seeds(task, user.profile, req.device.seeds,
                                device.user_seed(req.seed, user.user_id))
        seeds = chosen.items
        metrics = {"num-seeds": len(seeds), "num-profile": len(user.profile),
                   "num-queries": len(user.queries), **chosen.metrics()}
        return Out(metrics, {"items": json.dumps(seeds)})

    return each(users, one)


HANDLERS = {"query.seeds": query_seeds, "train": train_own("adapters")}

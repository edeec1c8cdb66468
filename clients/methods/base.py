"""What every method's device side is made of: a handler per message kind, over the users
a message names, and the work several methods share (evaluation through the base model,
training each user's own adapter, evaluating a received adapter).

A method's device side is `clients/methods/<name>.py` with `HANDLERS`: message kind ->
handler. `clients.client_app` reads the request, plays injected faults and puts each
user's result in the reply; a handler only does the work.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from flwr.app import Message

from clients import device
from clients.adapter_slot import load_adapter_state
from clients.protocol import Out, Request, Results
from tasks import Task, UserData

log = logging.getLogger(__name__)

Handler = Callable[[Message, Request, Task, list[UserData]], Results]


def each(users: list[UserData], work: Callable[[UserData], Out]) -> Results:
    """Work done user by user: one user's exception fails that user only."""
    out: Results = {}
    for user in users:
        try:
            out[user.user_id] = work(user)
        except Exception as err:  # the user's error record carries it to the server
            log.warning("user %s failed: %s", user.user_id, err, exc_info=True)
            out[user.user_id] = err
    return out


def together(users: list[UserData], work: Callable[[], dict[str, Out]]) -> Results:
    """Work done for the whole cohort in one call: its exception fails every user of it."""
    try:
        got = work()
    except Exception as err:  # each user's error record carries it to the server
        log.warning("cohort of %d failed: %s", len(users), err, exc_info=True)
        return {u.user_id: err for u in users}
    return {u.user_id: got[u.user_id] if u.user_id in got else
            LookupError(f"no result for user {u.user_id}") for u in users}


def own_items(msg: Message, name: str, user: UserData) -> list:
    """The JSON items of one user's record `name` ("synthetic", "answers")."""
    return json.loads(str(msg.content[f"{name}/{user.user_id}"]["items"]))


def evaluate_base(prompting: device.Prompting | None = None) -> Handler:
    """Evaluate the base model without an adapter, each query through `prompting`."""

    def handle(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
        def base() -> dict[str, Out]:
            rt = device.runtime(req.device)
            got = device.evaluate_users(rt, task, users, req.device, req.method, req.run_dir,
                                        prompting=prompting)
            return {uid: Out({**m, "num-examples": m["num-queries"]}, {"method": req.method})
                    for uid, m in got.items()}

        return together(users, base)

    return handle


def train_own(adapters: str, from_received: bool = False) -> Handler:
    """Train each user's own adapter on real + received synthetic data (none: real only),
    save it under `run_dir/<adapters>/<user>/`, evaluate it; reply metrics only. With
    `from_received`, each adapter starts from the one the message brought ("arrays")
    instead of a fresh one: fine-tuning."""

    def handle(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
        # load: each user's synthetic data (none for local_real)
        synthetic: dict[str, list[dict]] = {}
        bad: Results = {}
        for user in users:
            if f"synthetic/{user.user_id}" in msg.content:
                try:
                    synthetic[user.user_id] = own_items(msg, "synthetic", user)
                except (KeyError, TypeError, ValueError) as err:  # that user's record only
                    bad[user.user_id] = err
        ready = [u for u in users if u.user_id not in bad]

        # train, save, evaluate: the whole cohort through one base model
        def work() -> dict[str, Out]:
            rt = device.runtime(req.device)
            start = time.perf_counter()
            init = msg.content["arrays"].to_torch_state_dict() if from_received else None
            got = device.train_users(rt, task, ready, synthetic, req.device, req.method,
                                     req.run_dir, req.seed, adapters, init)
            log.debug("%d users trained in %.1f s", len(ready), time.perf_counter() - start)
            return {uid: Out({**m, "model-load-seconds": rt.load_seconds},
                             {"method": req.method}) if isinstance(m, dict) else m
                    for uid, m in got.items()}

        # reply
        return {**bad, **(together(ready, work) if ready else {})}

    return handle


def evaluate_received(msg: Message, req: Request, task: Task, users: list[UserData]
                      ) -> Results:
    """Evaluate a cohort's queries with the one adapter the message brought ("arrays"),
    all users' queries in shared batches."""

    def with_adapter() -> dict[str, Out]:
        rt = device.runtime(req.device)
        state = msg.content["arrays"].to_torch_state_dict()
        load_adapter_state(rt, state)
        metrics = device.evaluate_users(rt, task, users, req.device, req.method, req.run_dir,
                                        use_adapter=True)
        size = sum(v.numel() * v.element_size() for v in state.values())
        return {uid: Out({**m, "adapter-bytes": size}, {"method": req.method})
                for uid, m in metrics.items()}

    return together(users, with_adapter)

"""The device as a Flower ClientApp: seeds out, synthetic data in, metrics (only) back."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients import device, shared
from clients.faults import InjectedCrash, draw
from clients.protocol import Request
from clients.seeds import disclose_seeds
from clients.worker_log import log_to_run_dir
from tasks import Task, UserData
from tasks.files import mark_started

log = logging.getLogger(__name__)
app = ClientApp()

Handler = Callable[[Message, Request, Task, UserData], Message]


def _user(context: Context, req: Request):
    """This SuperNode's user: `partition-id` indexes the dataset's users."""
    data = device.dataset(req.data_dir, req.split, req.task)
    pid = int(context.node_config["partition-id"])
    users = data.user_ids()
    if pid >= len(users):
        raise ValueError(f"partition-id {pid} but {req.data_dir} has {len(users)} users")
    return data.task, data.users[users[pid]]


def _reply(message: Message, user_id: str, metrics: dict, **meta) -> Message:
    content = RecordDict({
        "meta": ConfigRecord({"user-id": user_id, **meta}),
        "metrics": MetricRecord({k: float(v) for k, v in metrics.items()}),
    })
    return Message(content=content, reply_to=message)


def _garbage(reply: Message, message: Message, variant: str) -> Message:
    """A malformed reply of the kind `variant` names (faults.device.garbage)."""
    content = reply.content
    if variant == "no_meta":
        del content["meta"]
    elif variant == "nan_metric":
        content["metrics"]["num-examples"] = float("nan")
    elif variant == "arrays":
        content["weights"] = ArrayRecord(numpy_ndarrays=[np.zeros(16, dtype=np.float32)])
    elif variant == "wrong_user":
        content["meta"]["user-id"] = "someone-else"
    elif variant == "bad_seeds":
        content["meta"]["items"] = "{not json"
    return Message(content=content, reply_to=message)


def handler(fn: Handler) -> Callable[[Message, Context], Message]:
    """Every handler's common start: read the request, say the work has started (the
    server's timeout counts from here), find the user, and play any injected fault."""

    @functools.wraps(fn)
    def wrapped(msg: Message, context: Context) -> Message:
        req = Request.from_config(msg.content["config"])
        mark_started(req.run_dir, msg.metadata.message_id)
        log_to_run_dir(req.run_dir)
        task, user = _user(context, req)
        fault, variant = draw(req.faults, req.fault_seed, req.method,
                              msg.metadata.message_type, user.user_id, req.attempt)
        if fault == "crash":
            raise InjectedCrash(f"injected crash of {user.user_id}'s device")
        if fault == "hang":
            log.debug("injected hang of %s for %.1f s", user.user_id, req.faults.hang_seconds)
            time.sleep(req.faults.hang_seconds)
        reply = fn(msg, req, task, user)
        return _garbage(reply, msg, variant) if fault == "garbage" else reply

    return wrapped


@app.query("user")
@handler
def query_user(msg: Message, req: Request, task: Task, user: UserData) -> Message:
    """Say which user this device holds (the server maps SuperNodes to users once)."""
    return _reply(msg, user.user_id, {"num-profile": len(user.profile)})


@app.query("seeds")
@handler
def query_seeds(msg: Message, req: Request, task: Task, user: UserData) -> Message:
    """Reply with up to k seed examples under the disclosure policy, enforced here on the
    device: k, which fields may leave, and optional scrubbing (k = 0 sends none)."""
    chosen = disclose_seeds(task, user.profile, req.device.seeds,
                            device.user_seed(req.seed, user.user_id))
    seeds = chosen.items
    metrics = {"num-seeds": len(seeds), "num-profile": len(user.profile),
               "num-queries": len(user.queries), **chosen.metrics()}
    return _reply(msg, user.user_id, metrics, items=json.dumps(seeds))


@app.query("data")
@handler
def query_data(msg: Message, req: Request, task: Task, user: UserData) -> Message:
    """shared_lora: every real example goes up (centralised training, not private)."""
    items = shared.shared_examples(task, user)
    return _reply(msg, user.user_id, {"num-examples": len(items)}, items=json.dumps(items))


@app.query("prompts")
@handler
def query_prompts(msg: Message, req: Request, task: Task, user: UserData) -> Message:
    """cloud: the user's queries, with retrieved profile items, go up to the cloud LLM."""
    prompts = shared.cloud_prompts(task, user, req.device)
    return _reply(msg, user.user_id, {"num-queries": len(prompts)}, items=json.dumps(prompts))


@app.train()
@handler
def train(msg: Message, req: Request, task: Task, user: UserData) -> Message:
    """Train this user's own adapter on real + received synthetic data; reply metrics only.

    fedavg_lora instead sends the global adapter: train it here, send it back.
    """
    if "arrays" in msg.content:
        return _train_global(msg, req, task, user)
    # load
    synthetic = []
    if "synthetic" in msg.content:
        synthetic = json.loads(str(msg.content["synthetic"]["items"]))
    rt = device.runtime(req.device)
    # train, save, evaluate
    start = time.perf_counter()
    metrics = device.train_user(rt, task, user, synthetic, req.device, req.method,
                                req.run_dir, req.seed)
    metrics["model-load-seconds"] = rt.load_seconds
    log.debug("user %s trained in %.1f s", user.user_id, time.perf_counter() - start)
    # reply
    return _reply(msg, user.user_id, metrics, method=req.method)


def _train_global(msg: Message, req: Request, task: Task, user: UserData) -> Message:
    rt = device.runtime(req.device)
    state = msg.content["arrays"].to_torch_state_dict()
    seed = device.user_seed(req.seed * 1000 + req.round, user.user_id)
    new, metrics = shared.train_global(rt, task, user, req.device, state, req.local_steps, seed)
    reply = _reply(msg, user.user_id, metrics, method=req.method)
    reply.content["arrays"] = ArrayRecord(torch_state_dict=new)
    return reply


@app.evaluate()
@handler
def evaluate(msg: Message, req: Request, task: Task, user: UserData) -> Message:
    """Evaluate the base model without an adapter (zero_shot, profile_prompt), with a
    received shared adapter (shared_lora, fedavg_lora), or score the cloud's answers."""
    if "arrays" in msg.content:
        rt = device.runtime(req.device)
        metrics = shared.evaluate_with(rt, task, user, req.device, req.method, req.run_dir,
                                       msg.content["arrays"].to_torch_state_dict(), req.seed)
        return _reply(msg, user.user_id, metrics, method=req.method)
    if "answers" in msg.content:
        answers = json.loads(str(msg.content["answers"]["items"]))
        metrics = shared.score_answers(task, user, req.device, req.method, req.run_dir,
                                       answers)
        return _reply(msg, user.user_id, metrics, method=req.method)
    rt = device.runtime(req.device)
    metrics = device.evaluate_user(rt, task, user, req.device, req.method, req.run_dir,
                                   use_adapter=False)
    metrics["num-examples"] = metrics["num-queries"]
    return _reply(msg, user.user_id, metrics, method=req.method)

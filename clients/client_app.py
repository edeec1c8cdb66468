"""The device as a Flower ClientApp: seeds out, synthetic data in, metrics (only) back."""

from __future__ import annotations

import json
import logging
import time

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients import device
from clients.protocol import Request
from clients.seeds import select_seeds

log = logging.getLogger(__name__)
app = ClientApp()


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


@app.query("user")
def query_user(msg: Message, context: Context) -> Message:
    """Say which user this device holds (the server maps SuperNodes to users once)."""
    req = Request.from_config(msg.content["config"])
    _, user = _user(context, req)
    return _reply(msg, user.user_id, {"num-profile": len(user.profile)})


@app.query("seeds")
def query_seeds(msg: Message, context: Context) -> Message:
    """Reply with up to k seed examples under the disclosure policy (k = 0 sends none)."""
    req = Request.from_config(msg.content["config"])
    task, user = _user(context, req)
    seeds = select_seeds(task, user.profile, req.device.seeds,
                         device.user_seed(req.seed, user.user_id))
    metrics = {"num-seeds": len(seeds), "num-profile": len(user.profile),
               "num-queries": len(user.queries)}
    return _reply(msg, user.user_id, metrics, items=json.dumps(seeds))


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train this user's own adapter on real + received synthetic data; reply metrics only."""
    # load
    req = Request.from_config(msg.content["config"])
    task, user = _user(context, req)
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


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the base model without an adapter (zero_shot, profile_prompt)."""
    req = Request.from_config(msg.content["config"])
    task, user = _user(context, req)
    rt = device.runtime(req.device)
    metrics = device.evaluate_user(rt, task, user, req.device, req.method, req.run_dir,
                                   use_adapter=False)
    metrics["num-examples"] = metrics["num-queries"]
    return _reply(msg, user.user_id, metrics, method=req.method)

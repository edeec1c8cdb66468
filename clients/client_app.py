"""The device as a Flower ClientApp: every message read, faulted and answered the same way,
its work done by the request's method (`clients/methods/<name>.py`).

A SuperNode holds a cohort of users (`runtime.cohort`, 1 by default); each handler works
for the users a message names and answers with one set of records per user (see
clients/protocol.py). One user's failure is that user's "error/<user>" record, not the
message's: the cohort's other users still answer.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp

from clients import device, methods
from clients.faults import InjectedCrash, draw
from clients.methods.base import Handler, each
from clients.protocol import Out, Request, Results, malform, put_user
from clients.worker_log import log_to_run_dir
from tasks import Task, UserData
from tasks.files import mark_started

log = logging.getLogger(__name__)
app = ClientApp()


@functools.lru_cache(maxsize=1)  # per worker process: sorting 10,000 ids once, not per message
def _user_ids(data_dir: str, split: str, task: str) -> tuple[str, ...]:
    return tuple(sorted(device.dataset(data_dir, split, task).user_ids()))


def _cohort(context: Context, req: Request) -> tuple[Task, list[UserData]]:
    """This SuperNode's users: partition-id p holds users[p*K:(p+1)*K] of the dataset's
    sorted user ids (K = the cohort size; K = 1 is one user per node)."""
    data = device.dataset(req.data_dir, req.split, req.task)
    pid, k = int(context.node_config["partition-id"]), req.cohort
    ids = _user_ids(req.data_dir, req.split, req.task)
    if pid * k >= len(ids):
        per = f" ({k} per SuperNode)" if k > 1 else ""
        raise ValueError(f"partition-id {pid} but {req.data_dir} has {len(ids)} users{per}")
    return data.task, [data.users[u] for u in ids[pid * k:(pid + 1) * k]]


def die_like_an_oom_kill(user: str) -> None:
    """faults.device.die: end this worker process at once, as the kernel's OOM killer
    does (no exception, no reply). Only in a Ray actor: never the driver or a test."""
    import ray

    if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
        log.warning("injected death of the worker serving %s", user)
        os._exit(137)


def handler(fn: Handler) -> Callable[[Message, Context], Message]:
    """Every handler's common start and end: read the request, say the work has started
    (the server's timeout counts from here), find the users, play any injected faults
    (drawn per user), do the work, and reply with each user's records."""

    @functools.wraps(fn)
    def wrapped(msg: Message, context: Context) -> Message:
        req = Request.from_config(msg.content["config"])
        if not mark_started(req.run_dir, msg.metadata.message_id):
            # timed out while queued: the server gave it up and sent a retry, so the work
            # is skipped rather than done for nobody (the retry waits behind it)
            return Message(content=RecordDict(), reply_to=msg)
        log_to_run_dir(req.run_dir)
        task, held = _cohort(context, req)
        by_id = {u.user_id: u for u in held}
        order = req.users if req.users is not None else list(by_id)
        results: Results = {u: LookupError(f"user {u} is not on this SuperNode")
                            for u in order if u not in by_id}
        garbage: dict[str, str] = {}
        hang = False
        for uid in order:
            if uid in results:
                continue
            fault, variant = draw(req.faults, req.fault_seed, req.method,
                                  msg.metadata.message_type, uid, req.attempt)
            if fault == "crash":
                results[uid] = InjectedCrash(f"injected crash of {uid}'s device")
            hang |= fault == "hang"
            if fault == "garbage":
                garbage[uid] = variant
            if fault == "die":
                die_like_an_oom_kill(uid)
        if hang:  # one sleep times the whole message out: the cohort shares a device
            log.debug("injected hang of node %s for %.1f s", context.node_id,
                      req.faults.hang_seconds)
            time.sleep(req.faults.hang_seconds)
        users = [by_id[u] for u in order if u not in results]
        if users:
            results.update(fn(msg, req, task, users))
        content = RecordDict()
        for uid in order:
            put_user(content, uid, results[uid])
            if uid in garbage:
                malform(content, uid, garbage[uid])
        return Message(content=content, reply_to=msg)

    return wrapped


@app.query("user")
@handler
def query_user(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    """Say which users this SuperNode holds (the server maps SuperNodes to users once)."""
    return each(users, lambda user: Out({"num-profile": len(user.profile)}))


def method_work(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    """The work of the request's method for this message kind (clients/methods/<name>.py)."""
    kind = msg.metadata.message_type
    handle = methods.handlers(req.method).get(kind)
    if handle is None:
        raise ValueError(f"method '{req.method}' has no device handler for '{kind}'")
    return handle(msg, req, task, users)


# Flower routes by message type: one registration per kind any method's device handles
for _kind in methods.message_kinds():
    _category, _, _action = _kind.partition(".")
    _register = getattr(app, _category)  # app.train, app.evaluate, app.query
    _register(_action)(handler(method_work)) if _action else _register()(handler(method_work))

"""The device as a Flower ClientApp: seeds out, synthetic data in, metrics (only) back.

A SuperNode holds a cohort of users (`runtime.cohort`, 1 by default); each handler works
for the users a message names and answers with one set of records per user (see
clients/protocol.py). One user's failure is that user's "error/<user>" record, not the
message's: the cohort's other users still answer.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable

from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from clients import device, shared
from clients.faults import InjectedCrash, draw
from clients.protocol import Out, Request, Results, malform, put_user
from clients.seeds import disclose_seeds
from clients.worker_log import log_to_run_dir
from tasks import Task, UserData
from tasks.files import mark_started

log = logging.getLogger(__name__)
app = ClientApp()

Handler = Callable[[Message, Request, Task, list[UserData]], Results]


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


def _each(users: list[UserData], work: Callable[[UserData], Out]) -> Results:
    """Work done user by user: one user's exception fails that user only."""
    out: Results = {}
    for user in users:
        try:
            out[user.user_id] = work(user)
        except Exception as err:  # the user's error record carries it to the server
            log.warning("user %s failed: %s", user.user_id, err, exc_info=True)
            out[user.user_id] = err
    return out


def _together(users: list[UserData], work: Callable[[], dict[str, Out]]) -> Results:
    """Work done for the whole cohort in one call: its exception fails every user of it."""
    try:
        got = work()
    except Exception as err:  # each user's error record carries it to the server
        log.warning("cohort of %d failed: %s", len(users), err, exc_info=True)
        return {u.user_id: err for u in users}
    return {u.user_id: got[u.user_id] if u.user_id in got else
            LookupError(f"no result for user {u.user_id}") for u in users}


def handler(fn: Handler) -> Callable[[Message, Context], Message]:
    """Every handler's common start and end: read the request, say the work has started
    (the server's timeout counts from here), find the users, play any injected faults
    (drawn per user), do the work, and reply with each user's records."""

    @functools.wraps(fn)
    def wrapped(msg: Message, context: Context) -> Message:
        req = Request.from_config(msg.content["config"])
        mark_started(req.run_dir, msg.metadata.message_id)
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


def _own_items(msg: Message, name: str, user: UserData) -> list:
    """The JSON items of one user's record `name` ("synthetic", "answers")."""
    return json.loads(str(msg.content[f"{name}/{user.user_id}"]["items"]))


@app.query("user")
@handler
def query_user(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    """Say which users this SuperNode holds (the server maps SuperNodes to users once)."""
    return _each(users, lambda user: Out({"num-profile": len(user.profile)}))


@app.query("seeds")
@handler
def query_seeds(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    """Reply with up to k seed examples per user under the disclosure policy, enforced here
    on the device: k, which fields may leave, and optional scrubbing (k = 0 sends none)."""

    def one(user: UserData) -> Out:
        chosen = disclose_seeds(task, user.profile, req.device.seeds,
                                device.user_seed(req.seed, user.user_id))
        seeds = chosen.items
        metrics = {"num-seeds": len(seeds), "num-profile": len(user.profile),
                   "num-queries": len(user.queries), **chosen.metrics()}
        return Out(metrics, {"items": json.dumps(seeds)})

    return _each(users, one)


@app.query("data")
@handler
def query_data(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    """shared_lora: every real example goes up (centralised training, not private)."""

    def one(user: UserData) -> Out:
        items = shared.shared_examples(task, user)
        return Out({"num-examples": len(items)}, {"items": json.dumps(items)})

    return _each(users, one)


@app.query("prompts")
@handler
def query_prompts(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    """cloud: the users' queries, with retrieved profile items, go up to the cloud LLM."""

    def one(user: UserData) -> Out:
        prompts = shared.cloud_prompts(task, user, req.device)
        return Out({"num-queries": len(prompts)}, {"items": json.dumps(prompts)})

    return _each(users, one)


@app.train()
@handler
def train(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    """Train each user's own adapter on real + received synthetic data; reply metrics only.

    fedavg_lora instead sends the global adapter: train it here, send it back.
    """
    if "arrays" in msg.content:
        return _train_global(msg, req, task, users)
    # load: each user's synthetic data (none for local_real)
    synthetic: dict[str, list[dict]] = {}
    bad: Results = {}
    for user in users:
        if f"synthetic/{user.user_id}" in msg.content:
            try:
                synthetic[user.user_id] = _own_items(msg, "synthetic", user)
            except (KeyError, TypeError, ValueError) as err:  # that user's record only
                bad[user.user_id] = err
    ready = [u for u in users if u.user_id not in bad]

    # train, save, evaluate: the whole cohort through one base model
    def work() -> dict[str, Out]:
        rt = device.runtime(req.device)
        start = time.perf_counter()
        got = device.train_users(rt, task, ready, synthetic, req.device, req.method,
                                 req.run_dir, req.seed)
        log.debug("%d users trained in %.1f s", len(ready), time.perf_counter() - start)
        return {uid: Out({**m, "model-load-seconds": rt.load_seconds}, {"method": req.method})
                for uid, m in got.items()}

    # reply
    return {**bad, **(_together(ready, work) if ready else {})}


def _train_global(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    def work() -> dict[str, Out]:
        rt = device.runtime(req.device)
        state = msg.content["arrays"].to_torch_state_dict()
        seeds = {u.user_id: device.user_seed(req.seed * 1000 + req.round, u.user_id)
                 for u in users}
        got = shared.train_global_users(rt, task, users, req.device, state, req.local_steps,
                                        seeds)
        return {uid: Out(m, {"method": req.method}, ArrayRecord(torch_state_dict=new))
                for uid, (new, m) in got.items()}

    return _together(users, work)


@app.evaluate()
@handler
def evaluate(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    """Evaluate the base model without an adapter (zero_shot, profile_prompt), with a
    received shared adapter (shared_lora, fedavg_lora), or score the cloud's answers."""
    meta = {"method": req.method}
    if "arrays" in msg.content:
        def with_adapter() -> dict[str, Out]:
            rt = device.runtime(req.device)
            state = msg.content["arrays"].to_torch_state_dict()
            got = shared.evaluate_with_users(rt, task, users, req.device, req.method,
                                             req.run_dir, state)
            return {uid: Out(m, meta) for uid, m in got.items()}

        return _together(users, with_adapter)
    if any(name.startswith("answers/") for name in msg.content):
        return _each(users, lambda user: Out(shared.score_answers(
            task, user, req.device, req.method, req.run_dir,
            _own_items(msg, "answers", user)), meta))

    def base() -> dict[str, Out]:
        rt = device.runtime(req.device)
        got = device.evaluate_users(rt, task, users, req.device, req.method, req.run_dir)
        return {uid: Out({**m, "num-examples": m["num-queries"]}, meta)
                for uid, m in got.items()}

    return _together(users, base)

"""cdcda_active on the device: each round, train on with this round's synthetic examples,
keep the adapter, and send back the loss on each seed: where the cloud should write next.

Round r trains `device.train.steps` / R steps (its share) from round r - 1's adapter, on the
real data and every synthetic example received so far (the device keeps them, with each
round's adapter, under `adapters-cdcda_active-rounds/<user>/<r>/`). Round 0 starts from the
fresh adapter cdcda would, with cdcda's data order. The last round saves the final adapter
in `adapters-cdcda_active/<user>/` and evaluates it on the held-out queries.
"""

from __future__ import annotations

import dataclasses
import json

import torch
from flwr.app import Message

from clients import cohort, device
from clients.cohort_trainer import CohortJob
from clients.methods.base import own_items, together
from clients.methods.cdcda import query_seeds
from clients.protocol import Out, Request, Results
from clients.seed_loss import item_losses
from clients.seeds import chosen_items
from clients.storage import adapter_dir, save_adapter
from tasks import Task, UserData
from tasks.budget import share
from tasks.files import load_stored, write_json

FOLDER = "adapters-cdcda_active"  # the final adapter, as every method keeps its own
ROUNDS = "adapters-cdcda_active-rounds"  # what the device keeps between rounds


def _round_dir(req: Request, user: str, r: int):
    return adapter_dir(req.run_dir, ROUNDS, user) / str(r)


def _examples(task: Task, req: Request, user: UserData, received: list[dict]) -> list:
    """Real data and every round's synthetic examples up to this one, as kept here."""
    write_json(_round_dir(req, user.user_id, req.round) / "synthetic.json", {"items": received})
    synthetic: list[dict] = []
    for r in range(req.round + 1):
        kept = load_stored(_round_dir(req, user.user_id, r) / "synthetic.json")
        if kept is None:
            raise FileNotFoundError(f"round {r}'s synthetic data is not on this device")
        synthetic += kept["items"]
    return task.profile_pairs(user.profile) + (
        task.profile_pairs(synthetic, synthetic=True) if synthetic else [])


def _previous(req: Request, user: str) -> dict[str, torch.Tensor] | None:
    """Round r - 1's adapter (None in round 0: a fresh one)."""
    if req.round == 0:
        return None
    from safetensors.torch import load_file

    path = _round_dir(req, user, req.round - 1) / "adapter" / "adapter_model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"round {req.round - 1}'s adapter is not on this device")
    return load_file(str(path))


def _totals(req: Request, user: str, report) -> tuple[int, int]:
    """Steps and tokens over every round so far (each round's kept beside its adapter):
    the budget to compare with cdcda's."""
    write_json(_round_dir(req, user, req.round) / "trained.json",
               {"steps": report.steps, "tokens": report.tokens})
    steps = tokens = 0
    for r in range(req.round + 1):
        done = load_stored(_round_dir(req, user, r) / "trained.json") or {}
        steps += int(done.get("steps", 0))
        tokens += int(done.get("tokens", 0))
    return steps, tokens


def train_round(msg: Message, req: Request, task: Task, users: list[UserData]) -> Results:
    steps = share(req.device.train.steps, req.round, req.rounds)
    if req.device.train.steps <= 0:
        raise ValueError("cdcda_active splits device.train.steps over augment.rounds: set "
                         "device.train.steps > 0")
    settings = dataclasses.replace(
        req.device, train=dataclasses.replace(req.device.train, steps=max(steps, 1)))
    bad: Results = {}
    received: dict[str, list[dict]] = {}
    for user in users:
        try:
            received[user.user_id] = own_items(msg, "synthetic", user)
        except (KeyError, TypeError, ValueError) as err:  # that user's record only
            bad[user.user_id] = err
    ready = [u for u in users if u.user_id not in bad]
    last = req.round == req.rounds - 1

    def work() -> dict[str, Out | Exception]:
        rt = device.runtime(req.device)
        jobs = []
        for u in ready:
            seed = device.user_seed(req.seed, u.user_id if req.round == 0
                                    else f"{u.user_id}/round-{req.round}")
            init = device.user_seed(req.seed, u.user_id)  # cdcda's fresh adapter
            jobs.append(CohortJob(_examples(task, req, u, received[u.user_id]), seed=seed,
                                  init_seed=init, init_state=_previous(req, u.user_id)))
        trained = cohort.train(rt, jobs, settings)
        finite = device.finite_users(trained.stack.user_parameters(), len(ready))
        evaluated = device.evaluate_users(rt, task, ready, settings, req.method, req.run_dir,
                                          stack=trained.stack) if last else {}
        out: dict[str, Out | Exception] = {}
        for k, (u, report) in enumerate(zip(ready, trained.reports)):
            if not finite[k] or report.diverged:  # that user's failure alone
                out[u.user_id] = device.NonFiniteAdapter(
                    f"user {u.user_id}'s training diverged in round {req.round}: lower "
                    "device.train.lr")
                continue
            seeds = chosen_items(u.profile, req.device.seeds,
                                 device.user_seed(req.seed, u.user_id))
            signal = item_losses(rt, trained.stack, k, task, seeds, settings)
            trained.stack.to_slot(k)
            size = save_adapter(rt.model, _round_dir(req, u.user_id, req.round) / "adapter")
            steps, tokens = _totals(req, u.user_id, report)
            if last:
                save_adapter(rt.model, adapter_dir(req.run_dir, FOLDER, u.user_id))
            metrics = {**evaluated.get(u.user_id, {}),
                       "num-examples": report.examples, "num-real": report.real_examples,
                       "num-synthetic": report.synthetic_examples,
                       "train-steps": steps, "train-tokens": tokens,
                       "round-steps": report.steps,
                       "train-seconds": report.seconds, "adapter-bytes": size,
                       "first-loss": report.epoch_losses[0] if report.epoch_losses else 0.0,
                       "last-loss": report.epoch_losses[-1] if report.epoch_losses else 0.0,
                       "signal-mean-loss": sum(signal) / max(len(signal), 1)}
            out[u.user_id] = Out(metrics, {"method": req.method, "signal": json.dumps(signal)})
        return out

    return {**bad, **(together(ready, work) if ready else {})}


HANDLERS = {"query.seeds": query_seeds, "train.round": train_round}

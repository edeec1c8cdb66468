"""The device's side of the message protocol: what a request carries, what a reply holds.

A SuperNode holds a cohort of `cohort` users (1 by default: one device per node); one
message serves several of them, and a record of one user is named "<record>/<user>".

Requests carry a ConfigRecord "config" (task, data location, run dir, method, run seed,
the device settings as JSON, the attempt number, any injected faults, the cohort size and
"users": a JSON list of the users the message is for; discovery, `query.user`, has none
and is answered for every user the node holds). Per user, `train` carries a ConfigRecord
"synthetic/<user>" and the cloud's `evaluate` "answers/<user>"; the shared adapter
("arrays", shared_lora and fedavg_lora) is one record for all. Replies carry, per user, a
ConfigRecord "meta/<user>" (user id, and for `query.*` the items as JSON) and a
MetricRecord "metrics/<user>", or a ConfigRecord "error/<user>" (the reason) when that
user's work failed. Only fedavg_lora's train replies carry an ArrayRecord
("arrays/<user>"): otherwise weights stay on the device. Devices drop a start marker
(`tasks.files.mark_started`) when they begin a message's work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from clients.faults import DeviceFaults
from clients.settings import DeviceSettings
from tasks.structured import from_mapping


@dataclass
class Request:
    task: str
    data_dir: str
    split: str
    run_dir: str
    method: str
    seed: int
    device: DeviceSettings
    attempt: int = 0  # 0 = first try; retries count up (injected faults draw again)
    faults: DeviceFaults = field(default_factory=DeviceFaults)
    fault_seed: int = 0
    local_steps: int = 0  # fedavg_lora: optimiser steps per round on the device
    round: int = 0  # fedavg_lora, cdcda_active: which round (each its own data order)
    rounds: int = 1  # cdcda_active: rounds in all (the last one evaluates)
    cohort: int = 1  # users per SuperNode: partition-id p holds sorted users[p*K:(p+1)*K]
    users: list[str] | None = None  # whom the message is for; None = every user held

    @classmethod
    def from_config(cls, cfg) -> Request:
        return cls(
            task=str(cfg["task"]), data_dir=str(cfg["data-dir"]), split=str(cfg["split"]),
            run_dir=str(cfg["run-dir"]), method=str(cfg["method"]), seed=int(cfg["seed"]),
            device=from_mapping(DeviceSettings, json.loads(str(cfg["device"])), "device."),
            attempt=int(cfg.get("attempt", 0)),
            faults=from_mapping(DeviceFaults, json.loads(str(cfg.get("faults", "{}"))),
                                "faults.device."),
            fault_seed=int(cfg.get("fault-seed", 0)),
            local_steps=int(cfg.get("local-steps", 0)),
            round=int(cfg.get("round", 0)),
            rounds=int(cfg.get("rounds", 1)),
            cohort=int(cfg.get("cohort", 1)),
            users=[str(u) for u in json.loads(str(cfg["users"]))] if "users" in cfg else None,
        )


@dataclass
class Out:
    """One user's answer: metrics, meta items, and (fedavg_lora's train only) its adapter."""

    metrics: dict[str, float]
    meta: dict[str, str] = field(default_factory=dict)
    arrays: ArrayRecord | None = None


Results = dict[str, Out | Exception]  # by user id: an answer, or why that user failed


def put_user(content: RecordDict, user_id: str, result: Out | Exception) -> None:
    """A user's records in the reply: meta and metrics (and arrays), or its error."""
    if isinstance(result, Exception):
        reason = f"{type(result).__name__}: {result}"[:1000]
        content[f"error/{user_id}"] = ConfigRecord({"reason": reason})
        return
    content[f"meta/{user_id}"] = ConfigRecord({"user-id": user_id, **result.meta})
    content[f"metrics/{user_id}"] = MetricRecord({k: float(v)
                                                  for k, v in result.metrics.items()})
    if result.arrays is not None:
        content[f"arrays/{user_id}"] = result.arrays


def malform(content: RecordDict, user_id: str, variant: str) -> None:
    """Malform one user's records the way `variant` names (faults.device.garbage)."""
    meta, metrics = f"meta/{user_id}", f"metrics/{user_id}"
    if meta not in content:  # the user's work failed: its error record stands
        return
    if variant == "no_meta":
        del content[meta]
    elif variant == "nan_metric":
        content[metrics]["num-examples"] = float("nan")
    elif variant == "arrays":
        content[f"weights/{user_id}"] = ArrayRecord(
            numpy_ndarrays=[np.zeros(16, dtype=np.float32)])
    elif variant == "wrong_user":
        content[meta]["user-id"] = "someone-else"
    elif variant == "bad_seeds":
        content[meta]["items"] = "{not json"

"""The device's side of the message protocol: what a request carries, what a reply holds.

Requests carry a ConfigRecord "config" (task, data location, run dir, method, run seed,
the device settings as JSON, the attempt number and any injected faults) and, for
`train`, a ConfigRecord "synthetic". Replies carry a ConfigRecord "meta" (user id, and
for `query.seeds` the seed items as JSON) and a MetricRecord "metrics". No reply ever
carries an ArrayRecord: weights stay on the device. Devices drop a start marker
(`tasks.files.mark_started`) when they begin a message's work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from clients.faults import DeviceFaults
from clients.settings import DeviceSettings
from tasks.structured import from_mapping

QUERY_SEEDS = "query.seeds"
QUERY_DATA = "query.data"  # shared_lora: all real examples up
QUERY_PROMPTS = "query.prompts"  # cloud: the user's prompts up
TRAIN = "train"
EVALUATE = "evaluate"


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
    round: int = 0  # fedavg_lora: which round (each draws its own data order)

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
        )

"""The device's side of the message protocol: what a request carries, what a reply holds.

Requests carry a ConfigRecord "config" (task, data location, run dir, method, run seed and
the device settings as JSON) and, for `train`, a ConfigRecord "synthetic". Replies carry a
ConfigRecord "meta" (user id, and for `query.seeds` the seed items as JSON) and a
MetricRecord "metrics". No reply ever carries an ArrayRecord: weights stay on the device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from clients.settings import DeviceSettings
from tasks.structured import from_mapping

QUERY_SEEDS = "query.seeds"
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

    @classmethod
    def from_config(cls, cfg) -> Request:
        return cls(
            task=str(cfg["task"]), data_dir=str(cfg["data-dir"]), split=str(cfg["split"]),
            run_dir=str(cfg["run-dir"]), method=str(cfg["method"]), seed=int(cfg["seed"]),
            device=from_mapping(DeviceSettings, json.loads(str(cfg["device"])), "device."),
        )

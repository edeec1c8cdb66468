"""fedavg_ft: FedAvg + fine-tuning, the first personalized-FL baseline. FedAvg's rounds
train the global adapter exactly as fedavg_lora does (same initialisation, participants
and data orders); then the global adapter goes down once more and each device fine-tunes
it on its own real data for `device.train` steps (local_real's budget: equal local steps),
keeps it in `adapters-fedavg_ft/` and replies with metrics only. In a run with both
methods the rounds are trained once (`fedavg_lora.adopt_rounds`)."""

from __future__ import annotations

from flwr.serverapp import Grid

from strategies.methods.base import Coordinator, Method, MethodResult, metrics_of
from strategies.methods.fedavg_lora import train_global

FINETUNE = "train.finetune"  # the global adapter down, metrics only back


def run(s: Coordinator, grid: Grid, method: str, users: list[str], attempt: int, last: bool,
        result: MethodResult) -> dict[str, str]:
    adapter = train_global(s, grid, method, attempt, init="fedavg_lora")
    msgs = s.messages(users, FINETUNE, method, attempt, records={"arrays": adapter})
    return s.exchange(grid, msgs, method, attempt, metrics_of,
                      lambda view, m: s.store(method, view.user, m, result))


METHOD = Method(
    name="fedavg_ft", run=run, kinds=("train", FINETUNE),
    traffic="fedavg_lora's rounds, then the adapter down once to fine-tune on the device",
    trains="global", trainer="cohort", arrays_up=frozenset({"train"}),
    round_kinds=("train",), rounds=lambda cfg: cfg.fedavg.rounds)

"""What a method is: one declaration that the strategy, exchange, accounting, summary and
config read, so no module outside a method's own two files names it.

A method is a pair of files, as in PFLlib: `strategies/methods/<name>.py` (its `METHOD`:
the server-side runner and what the rest of the system asks about it) and
`clients/methods/<name>.py` (its device-side handlers). `strategies/methods/__init__.py`
registers it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from flwr.app import ArrayRecord, Message
from flwr.serverapp import Grid

from strategies.accounting import Ledger
from strategies.replies import View, reply_metrics

Trains = Literal["nothing", "own", "pooled", "global"]


@dataclass
class MethodResult:
    per_user: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # users still failed at the end
    seconds: float = 0.0


# (seeds by user, attempt[, focus seeds by user, (round, rounds)]) -> (synthetic items by
# user, filter counts by user, cloud errors by user: {cause: failed requests})
Augmenter = Callable[...,
                     tuple[dict[str, list[dict]], dict[str, dict], dict[str, dict[str, int]]]]


@dataclass
class Services:
    """Server-side work that needs models, provided by the experiment (this package stays
    free of model code): training on a pool, a fresh adapter, the cloud's answers. The
    method's name seeds what it gets."""

    train_pooled: Callable[[str, dict[str, list[dict]]], ArrayRecord]  # (method, pool)
    initial_adapter: Callable[[str], ArrayRecord]  # (method): e.g. FedAvg's round 0
    # the cloud's answer to each prompt (str or a CloudError), given each prompt's user:
    # a user's answers depend on its own prompts only
    answer: Callable[[list[str], list[str]], list]
    fedavg: object = None  # strategies.methods.fedavg_lora.FedAvgSettings


class Coordinator(Protocol):
    """What a method's runner may use of the strategy that runs it."""

    run_dir: Path
    request: dict  # the config every message carries (the run's faults among it)
    ledger: Ledger  # every exchange's bytes: a method charges traffic it takes over
    settings: object  # strategies.strategy.StrategySettings: seed, fallback, retries
    services: Services | None
    augmenter: Augmenter | None

    @property
    def users(self) -> list[str]: ...

    def should_stop(self) -> bool: ...

    def messages(self, users: list[str], kind: str, method: str, attempt: int = 0,
                 own: Callable[[str], Mapping] | None = None, records: Mapping | None = None,
                 **config) -> list[Message]: ...

    @property
    def user_node(self) -> dict[str, int]: ...

    def exchange(self, grid: Grid, messages: list[Message], method: str, attempt: int,
                 parse: Callable[[View], object],
                 commit: Callable[[View, object], None],
                 more: Callable[[], tuple[list[Message], bool]] | None = None,
                 busy: list[tuple[float, float]] | None = None) -> dict[str, str]: ...

    def store(self, method: str, user: str, metrics: dict[str, float],
              result: MethodResult) -> None: ...

    def cloud_failed(self, method: str, user: str, what: str, causes: Mapping[str, int],
                     attempt: int, failed: dict[str, str]) -> None: ...


# (strategy, grid, method name, users to do, attempt, last attempt?, result) -> failures
Runner = Callable[[Coordinator, Grid, str, list[str], int, bool, MethodResult],
                  dict[str, str]]


@dataclass(frozen=True)
class Method:
    """Everything the rest of the system asks about a method, in one place."""

    name: str
    run: Runner  # the server side: drives the exchanges, stores each user's metrics
    kinds: tuple[str, ...]  # the message kinds it sends (its device handles each)
    traffic: str  # what crosses the network, in words (the README's table)
    trains: Trains = "nothing"  # own: a LoRA per user; pooled: one on all users' data
    # (on the server); global: one LoRA trained by the devices together (FedAvg)
    trainer: Literal["cohort"] | None = None  # through which trainer (clients.cohort)
    arrays_up: frozenset[str] = frozenset()  # kinds whose replies may carry arrays
    round_kinds: tuple[str, ...] = ()  # kinds that recur every round (projections)
    rounds: Callable[[object], int] | None = None  # rounds run, from the run's Config
    uses_cloud: bool = False  # the embedded cloud LLM must be ready before it runs
    augments: bool = False  # stores synthetic data; the summary's augmentation
    # (run dir, user) -> the user's filter counts as stored, None if it has none yet
    counts: Callable[[Path, str], dict | None] | None = None
    # (the run's Config) -> raises ConfigError where the method cannot run with it
    check_config: Callable[[object], None] | None = None
    default: bool = True  # in experiment.methods unless a config names its own

    def projected_rounds(self, cfg) -> int:
        """The rounds its traffic was measured over (1 for a method without rounds)."""
        return self.rounds(cfg) if self.rounds is not None else 1


def evaluate_each(kind: str = "evaluate"):
    """A runner that sends each user one `kind` request and stores the metrics it returns
    (the prompt baselines evaluate, local_real trains: nothing goes down but the request)."""

    def run(s: Coordinator, grid: Grid, method: str, users: list[str], attempt: int,
            last: bool, result: MethodResult) -> dict[str, str]:
        msgs = s.messages(users, kind, method, attempt)
        if not msgs:
            return {}
        return s.exchange(grid, msgs, method, attempt, metrics_of,
                          lambda view, m: s.store(method, view.user, m, result))

    return run


def metrics_of(view: View) -> dict[str, float]:
    """A reply's metrics: the parse of every exchange that only brings metrics back."""
    return reply_metrics(view.content)


def node_names(s: Coordinator, users) -> dict[str, str]:
    """Each user's SuperNode, named by the first of all the users it holds (stable across
    sessions, unlike Flower's node ids): the cloud may batch a node's users together."""
    members: dict[int, list[str]] = {}
    for user in s.user_node:
        members.setdefault(s.user_node[user], []).append(user)
    name = {n: min(us) for n, us in members.items()}
    return {u: name[s.user_node[u]] if u in s.user_node else u for u in users}

"""The one typed experiment config: TOML file(s) + `--set key=value` overrides, validated once."""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tomli_w

from clients.faults import DeviceFaults
from clients.settings import DeviceSettings
from server.settings import AugmentSettings, CloudFaults, CloudSettings
from strategies.methods import DEFAULT_METHODS, METHODS, get_method
from strategies.methods.fedavg_lora import FedAvgSettings
from tasks.benchmark import GENERATORS
from tasks.structured import ConfigError, check, from_mapping, to_mapping

APP_ROOT = Path(__file__).resolve().parent.parent  # the Flower app: pyproject.toml, configs/
CONFIGS = APP_ROOT / "configs"
DEFAULT_CONFIG = CONFIGS / "default.toml"


MAX_PER_USER = 10_000  # benchmark examples or queries per user: more is a typo, not a study


@dataclass
class DataSettings:
    source: Literal["benchmark", "lamp"] = field(
        default="benchmark", metadata={"help": "bundled generator, or LaMP files in `dir`"})
    benchmark: str = field(default="headline", metadata={
        "help": "tags | rating | headline | citation | title | tweet (LaMP-2, 3, 4, 1, 5, 7)"})
    profile_size: int = field(default=8, metadata={"help": "benchmark: real examples per user"})
    queries: int = field(default=2, metadata={"help": "benchmark: held-out queries per user"})
    noise: float = field(default=0.0, metadata={"help": "benchmark: share of golds flipped"})
    heterogeneity: float = field(default=1.0, metadata={
        "help": "benchmark: how different users are; 0 = one preference for everyone, 1 = "
                "each their own, in between each keeps the population's with 1 - h"})
    dir: str = field(default="", metadata={"help": "lamp: folder with {split}_questions.json"})
    split: str = field(default="dev", metadata={"help": "lamp: file prefix (train, dev, test)"})
    task: str = field(default="", metadata={"help": "lamp: LaMP-1 ... LaMP-7"})

    def __post_init__(self) -> None:
        if self.source == "benchmark":
            check(self.benchmark in GENERATORS, "benchmark",
                  f"= '{self.benchmark}' is not one of {', '.join(GENERATORS)}")
            check(1 <= self.profile_size <= MAX_PER_USER, "profile_size",
                  f"must be in [1, {MAX_PER_USER}], got {self.profile_size}")
            check(1 <= self.queries <= MAX_PER_USER, "queries",
                  f"must be in [1, {MAX_PER_USER}], got {self.queries}")
            check(0 <= self.noise < 1, "noise", f"must be in [0, 1), got {self.noise}")
            check(0 <= self.heterogeneity <= 1, "heterogeneity",
                  f"must be in [0, 1], got {self.heterogeneity}")
        else:
            check(bool(self.dir), "dir", "must name a folder when source = 'lamp'")
            check(bool(self.task), "task", "must name the LaMP task when source = 'lamp'")


@dataclass
class ExperimentSettings:
    name: str = "default"
    seed: int = 0
    users: int = field(default=8, metadata={"help": "simulated devices (one user each)"})
    sample: int = field(default=0, metadata={"help": "users taking part; 0 = all"})
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS), metadata={
        "help": "methods compared, in this order (strategies/methods/__init__.py)"})

    def __post_init__(self) -> None:
        check(self.users >= 1, "users", f"must be >= 1, got {self.users}")
        check(self.sample >= 0, "sample", "must be >= 0")
        check(bool(self.methods), "methods", f"is empty: name at least one of "
                                             f"{', '.join(METHODS)}")
        for m in self.methods:
            check(m in METHODS, "methods", f"has '{m}'; known methods: {', '.join(METHODS)}")
        check(len(set(self.methods)) == len(self.methods), "methods",
              f"names a method twice: {self.methods}")


@dataclass
class RuntimeSettings:
    ray_address: str = field(default="", metadata={"help": "'' = local Ray; 'auto' = cluster"})
    num_cpus: float = field(default=0.0, metadata={"help": "local Ray CPUs; 0 = all cores"})
    client_cpus: float = field(default=1.0, metadata={"help": "CPUs per simulated device"})
    client_gpus: float = field(default=0.0, metadata={"help": "GPUs per simulated device"})
    timeout: float = field(default=3600.0, metadata={
        "help": "seconds a device may work on one message, counted from when it starts "
                "(queued devices never time out for waiting their turn)"})
    retries: int = field(default=1, metadata={
        "help": "extra attempts for users whose device or cloud request failed"})
    cohort: int = field(default=1, metadata={
        "help": "users per SuperNode: 1 = one simulated device per node (the faithful "
                "mapping); K > 1 = ceil(users / K) nodes of K users each, fewer for Flower "
                "to drive; each user is still charged only its own traffic"})
    wandb: Literal["offline", "online", "disabled"] = "offline"
    wandb_project: str = "cdcda"

    def __post_init__(self) -> None:
        check(self.client_cpus > 0, "client_cpus", "must be > 0")
        check(self.client_gpus >= 0, "client_gpus", f"must be >= 0, got {self.client_gpus}")
        check(self.num_cpus >= 0, "num_cpus", f"must be >= 0 (0 = all cores), got "
                                              f"{self.num_cpus}")
        check(self.timeout > 0, "timeout", "must be > 0")
        check(self.retries >= 0, "retries", f"must be >= 0, got {self.retries}")
        check(self.cohort >= 1, "cohort", f"must be >= 1, got {self.cohort}")


@dataclass
class FaultSettings:
    """Injected faults, to test that a run survives them (all off by default)."""

    seed: int = field(default=0, metadata={"help": "seed of every fault decision"})
    device: DeviceFaults = field(default_factory=DeviceFaults)
    cloud: CloudFaults = field(default_factory=CloudFaults)


@dataclass
class SweepSettings:
    grid: list[str] = field(default_factory=list, metadata={
        "help": "`cdcda sweep` points: 'section.key=v1,v2,...' each, one run per combination "
                "(`cdcda run` ignores it)"})


@dataclass
class Config:
    experiment: ExperimentSettings = field(default_factory=ExperimentSettings)
    data: DataSettings = field(default_factory=DataSettings)
    device: DeviceSettings = field(default_factory=DeviceSettings)
    cloud: CloudSettings = field(default_factory=CloudSettings)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    fedavg: FedAvgSettings = field(default_factory=FedAvgSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    faults: FaultSettings = field(default_factory=FaultSettings)
    sweep: SweepSettings = field(default_factory=SweepSettings)

    def __post_init__(self) -> None:
        for m in self.experiment.methods:  # what a method needs of the other sections
            if get_method(m).check_config is not None:
                get_method(m).check_config(self)


def parse_value(text: str):
    """`--set` values: TOML-ish literals (numbers, true/false, lists), else the raw string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()
                ) -> Config:
    """Defaults <- the TOML file <- `section.key=value` overrides, validated in one go."""
    raw: dict = {}
    if path:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} not found")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML ({err})") from err
    if path:
        try:  # the file alone first, so an error is blamed on the file or on --set
            from_mapping(Config, raw)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{item}' must look like section.key=value")
        node: dict = {}
        leaf = node
        parts = key.strip().split(".")
        for p in parts[:-1]:
            leaf = leaf.setdefault(p, {})
        leaf[parts[-1]] = parse_value(value)
        raw = _merge(raw, node)
    try:
        return from_mapping(Config, raw)
    except ConfigError as err:
        where = "--set: " if overrides else (f"{path}: " if path else "")
        raise ConfigError(f"{where}{err}") from None


def config_changes(old: Config, new: Config,
                   ignore: tuple[str, ...] = ("runtime.", "faults.", "sweep.")
                   ) -> list[str]:
    """Dotted fields whose values differ, e.g. ['device.lora.rank: 8 -> 16']."""
    out: list[str] = []

    def walk(a, b, prefix: str) -> None:
        for key in sorted(set(a) | set(b)):
            name = prefix + key
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                walk(a[key], b[key], name + ".")
            elif a.get(key) != b.get(key) and not name.startswith(ignore):
                out.append(f"{name}: {a.get(key)!r} -> {b.get(key)!r}")

    walk(to_mapping(old), to_mapping(new), "")
    return out


def dump_config(cfg: Config, path: Path) -> None:
    """Write the resolved config beside the results (TOML, reloadable with load_config)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(to_mapping(cfg)))

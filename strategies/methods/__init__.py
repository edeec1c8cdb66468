"""The methods an experiment compares, by name: one line each (see methods/base.py)."""

from strategies.methods import (
    cdcda,
    cdcda_active,
    cloud,
    fedavg_ft,
    fedavg_lora,
    local_real,
    profile_prompt,
    shared_lora,
    zero_shot,
)
from strategies.methods.base import Method

REGISTRY: dict[str, Method] = {m.METHOD.name: m.METHOD for m in (
    zero_shot, profile_prompt, local_real, cdcda, shared_lora, fedavg_lora, fedavg_ft, cloud,
    cdcda_active,
)}
METHODS = tuple(REGISTRY)  # in the order a run reports them
DEFAULT_METHODS = tuple(m for m in METHODS if REGISTRY[m].default)  # cdcda_active: opt in


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method '{name}': use {', '.join(METHODS)}") from None

"""Shared fixtures: tiny models, a small benchmark, offline settings for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tags_data(tmp_path_factory):
    from tasks import load_lamp_dir
    from tasks.benchmark import make_benchmark

    out = tmp_path_factory.mktemp("tags")
    make_benchmark("tags", 4, 0, out, profile_size=6, queries=2)
    return load_lamp_dir(out)


@pytest.fixture(scope="session")
def tiny_device():
    from clients.device import runtime
    from clients.settings import DeviceSettings, LoraSettings, TrainSettings

    # all-linear: a random 2-layer model barely moves with q/v adapters alone
    settings = DeviceSettings(model="tiny-random", prompt_style="plain",
                              lora=LoraSettings(target_modules=["all-linear"]),
                              train=TrainSettings(epochs=2, batch_size=4, bf16=False))
    return settings, runtime(settings)

"""A cohort on one device runtime: K users trained together, each answered with its own adapter.

Every training path goes through here (local_real, cdcda, FedAvg's local rounds and the
pooled shared_lora training, which is a cohort of one): fresh adapters start from peft's
own seeded initialisation, trained weights go back through peft's slot to be saved in its
format, and evaluation batches all users' queries, each row through its own adapter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from clients.adapter_slot import load_adapter_state, reset_adapter
from clients.cohort_trainer import CohortJob, train_cohort
from clients.inference import GenerationReport, generate
from clients.settings import DeviceSettings, TrainSettings
from clients.stacked_lora import StackedLora
from clients.trainer import TrainReport

MAX_GENERATE_ROWS = 64  # prompts of several users generated together


@dataclass
class Trained:
    stack: StackedLora
    reports: list[TrainReport]


def train(rt, jobs: Sequence[CohortJob], settings: DeviceSettings) -> Trained:
    """Initialise each job's adapter as a one-by-one run would, then train them together."""
    stack = StackedLora(rt.model, len(jobs))
    for k, job in enumerate(jobs):
        if job.init_state is not None:
            load_adapter_state(rt, job.init_state)
        else:
            reset_adapter(rt.model, job.init_seed if job.init_seed is not None else job.seed)
        stack.load_slot(k)
    lm = rt.model.get_base_model()
    checkpointing = settings.train.checkpointing and lm.supports_gradient_checkpointing
    if checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        reports = train_cohort(rt.model, stack, rt.tokenizer, rt.formatter, jobs,
                               settings.train, pass_tokens(settings.train, lm.device))
    finally:
        if checkpointing:
            lm.gradient_checkpointing_disable()
    return Trained(stack, reports)


def pass_tokens(train: TrainSettings, device: torch.device) -> int:
    """`train.pass_tokens`, or the device's default when it is 0.

    Measured on the 135M recipe, 16 users (5,312 tokens a step) on a 2-core CPU: passes of
    2,048 tokens ran a step in 12.6 s at 4.0 GB peak, one pass of 5,312 in 12.3 s at 7.8 GB.
    A CPU gains nothing from larger passes; a GPU does (its matmuls need rows).
    """
    if train.pass_tokens:
        return train.pass_tokens
    return 2048 if device.type == "cpu" else 32768


def answer(rt, prompts: Sequence[Sequence[str]], max_new_tokens: int, batch_size: int,
           stack: StackedLora | None = None, adapter: bool = True
           ) -> tuple[list[list[str]], GenerationReport]:
    """Greedy answers to each user's prompts, all users' prompts in shared batches.

    With `stack`, row b answers through its own user's adapter; without it, through
    peft's slot (`adapter=True`: one adapter for everyone) or the bare base model.
    """
    flat = [(k, p) for k, ps in enumerate(prompts) for p in ps]
    rows = [k for k, _ in flat]
    width = max(batch_size, min(MAX_GENERATE_ROWS, batch_size * len(prompts)))
    if stack is not None:
        ctx = stack.active()
    elif not adapter:
        ctx = rt.model.disable_adapter()
    else:
        ctx = contextlib.nullcontext()
    with ctx:
        report = generate(rt.model, rt.tokenizer, rt.formatter, [p for _, p in flat],
                          max_new_tokens, width,
                          on_batch=(lambda a, b: stack.set_rows(rows[a:b])) if stack else None)
    out: list[list[str]] = [[] for _ in prompts]
    for k, text in zip(rows, report.texts):
        out[k].append(text)
    return out, report

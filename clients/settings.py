"""Device-side settings: base model, LoRA, local training, evaluation and seed disclosure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tasks.structured import check

# sizes are checked before anything of that size is allocated
MAX_BATCH = 4096  # examples per optimiser step
MAX_LENGTH = 131_072  # tokens per example: the longest contexts models state today


@dataclass
class LoraSettings:
    rank: int = field(default=8, metadata={"help": "LoRA rank r"})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "v_proj"],
        metadata={"help": "module names to adapt, or ['all-linear']"},
    )

    def __post_init__(self) -> None:
        check(self.rank >= 1, "rank", f"must be >= 1, got {self.rank}")
        check(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")
        check(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(bool(self.target_modules), "target_modules", "must name at least one module")

    def peft_config(self):
        from peft import LoraConfig

        targets = self.target_modules
        return LoraConfig(
            r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
            target_modules="all-linear" if targets == ["all-linear"] else list(targets),
            task_type="CAUSAL_LM",
        )


@dataclass
class TrainSettings:
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    epochs: int = field(default=3, metadata={"help": "passes over the user's data"})
    batch_size: int = field(default=8, metadata={"help": "examples per optimiser step"})
    max_length: int = field(default=256, metadata={"help": "tokens per example (prompt cut left)"})
    real_weight: float = field(default=1.0, metadata={"help": "loss weight of real vs synthetic"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip per user; 0 disables"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    bf16: Literal["auto", True, False] = field(default="auto", metadata={
        "help": "bf16 autocast; auto = where the device computes bf16 natively (a GPU, a "
                "CPU with AMX or AVX-512), float32 on an AVX2-only CPU, where bf16 is "
                "emulated and training ran 5x slower"})
    steps: int = field(default=0, metadata={
        "help": "exact optimiser steps per user, cycling the data; 0 = `epochs` passes. "
                "Use it to compare methods whose users hold different amounts of data"})
    pass_tokens: int = field(default=0, metadata={
        "help": "most padded tokens in one forward pass of a cohort: a step of more runs "
                "as several passes of whole users (same result, bounded memory); 0 = by "
                "device: 2048 on a CPU (as fast as larger passes there, half the memory), "
                "32768 on a GPU"})
    checkpointing: bool = field(default=False, metadata={
        "help": "activation checkpointing in the base (less memory, ~30% more compute)"})

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        check(1 <= self.batch_size <= MAX_BATCH, "batch_size",
              f"must be in [1, {MAX_BATCH}], got {self.batch_size}")
        check(16 <= self.max_length <= MAX_LENGTH, "max_length",
              f"must be in [16, {MAX_LENGTH}], got {self.max_length}")
        check(self.real_weight > 0, "real_weight", f"must be > 0, got {self.real_weight}")
        check(self.steps >= 0, "steps", f"must be >= 0, got {self.steps}")
        check(self.pass_tokens >= 0, "pass_tokens", f"must be >= 0, got {self.pass_tokens}")

    def uses_bf16(self, device: str) -> bool:
        """`bf16` made concrete for `device` ('cpu' or 'cuda')."""
        if self.bf16 == "auto":
            from models.loading import native_bf16

            return native_bf16(device)
        return bool(self.bf16)


@dataclass
class EvalSettings:
    batch_size: int = field(default=8, metadata={"help": "queries generated together"})
    max_new_tokens: int = field(default=0, metadata={"help": "0 = the task's own limit"})
    max_queries: int = field(default=0, metadata={"help": "held-out queries per user; 0 = all"})
    profile_k: int = field(default=3, metadata={"help": "BM25 items in profile_prompt"})

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.max_new_tokens >= 0, "max_new_tokens", "must be >= 0")
        check(self.profile_k >= 0, "profile_k", "must be >= 0")


@dataclass
class SeedSettings:
    k: int = field(default=4, metadata={
        "help": "most seed examples sent to the cloud (fewer if the profile is smaller); "
                "0 = none, only the task name leaves the device"})
    policy: Literal["random", "recent"] = field(
        default="random", metadata={"help": "which profile items become seeds"}
    )
    fields: list[str] = field(default_factory=list, metadata={
        "help": "the task's item fields a seed may carry (e.g. ['description']); others are "
                "not sent. Empty = all of the task's fields. Checked against the task on "
                "the device"})
    scrub: bool = field(default=False, metadata={
        "help": "replace e-mail addresses, phone numbers and URLs in sent fields with "
                "[email], [phone], [url] and report how many (seeds-scrubbed-<kind>)"})

    def __post_init__(self) -> None:
        check(self.k >= 0, "k", f"must be >= 0, got {self.k}")
        check(all(isinstance(f, str) and f for f in self.fields), "fields",
              f"must be field names, got {self.fields!r}")
        check(len(set(self.fields)) == len(self.fields), "fields",
              f"names a field twice: {self.fields!r}")


@dataclass
class DeviceSettings:
    model: str = field(default="smollm2-135m-instruct", metadata={"help": "device base model"})
    dtype: Literal["float32", "bfloat16"] = "float32"
    accelerator: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "auto = CUDA when this worker was given a GPU"})
    prompt_style: Literal["auto", "chat", "plain"] = "auto"
    threads: int = field(default=0, metadata={"help": "torch threads per device; 0 = leave"})
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    seeds: SeedSettings = field(default_factory=SeedSettings)

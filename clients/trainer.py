"""Fine-tune one user's LoRA adapter on real + synthetic examples: the loop, spelled out."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from clients.settings import TrainSettings
from models.context import clip
from models.prompting import PromptFormatter
from tasks.catalog import Example

IGNORE = -100


@dataclass
class TrainReport:
    steps: int = 0
    examples: int = 0
    real_examples: int = 0
    synthetic_examples: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)  # per step
    epoch_losses: list[float] = field(default_factory=list)  # mean per epoch
    diverged: bool = False  # a loss went NaN or inf (cohort training goes on for the rest)

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(self.steps, 1)


def encode(
    examples: Sequence[Example], tokenizer, formatter: PromptFormatter, max_length: int
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per example; labels mask the prompt so loss is on the answer only.

    Over-long prompts are cut from the left so the answer and the prompt's end survive;
    texts are cut to `max_length` tokens' worth of characters before they are tokenised.
    """
    out = []
    for ex in examples:
        prompt = clip(formatter.prompt(ex.prompt), max_length, tokenizer, keep="end")
        answer = clip(formatter.answer(ex.output), max_length, tokenizer, keep="start")
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"]
        a = a[: max_length - 8]
        p = p[-(max_length - len(a)) :]
        out.append((p + a, [IGNORE] * len(p) + a))
    return out


def _collate(rows, pad_id: int):
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return ids, labels, mask


def weighted_token_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor):
    """Token-normalised cross-entropy where each example's tokens carry its weight.

    logits (B, T, V), labels (B, T), weights (B,): sum_i w_i * CE_i / sum_i w_i * n_i.
    """
    shift_logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))
    shift_labels = labels[:, 1:]
    ce = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
        ignore_index=IGNORE, reduction="none",
    ).view(shift_labels.shape)  # (B, T-1)
    valid = (shift_labels != IGNORE).float()
    w = weights[:, None] * valid
    return (ce * w).sum() / w.sum().clamp_min(1e-8)


def train_lora(
    model: torch.nn.Module,
    tokenizer,
    formatter: PromptFormatter,
    examples: Sequence[Example],
    settings: TrainSettings,
    seed: int,
) -> TrainReport:
    """Train the model's trainable (LoRA) parameters in place; deterministic for a seed."""
    report = TrainReport(
        examples=len(examples),
        real_examples=sum(not e.synthetic for e in examples),
        synthetic_examples=sum(e.synthetic for e in examples),
    )
    if not examples:
        return report
    rows = encode(examples, tokenizer, formatter, settings.max_length)
    weights = torch.tensor([1.0 if e.synthetic else settings.real_weight for e in examples])
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise RuntimeError("train_lora: the model has no trainable parameters (no adapter?)")
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    device = next(model.parameters()).device
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if settings.uses_bf16(device.type) else contextlib.nullcontext()
    )
    gen = torch.Generator().manual_seed(seed)
    pad_id = tokenizer.pad_token_id
    model.train()
    start = time.perf_counter()
    batches_per_epoch = math.ceil(len(rows) / settings.batch_size)
    epochs = math.ceil(settings.steps / batches_per_epoch) if settings.steps else settings.epochs
    for _ in range(epochs):
        order = torch.randperm(len(rows), generator=gen).tolist()
        epoch_loss, epoch_batches = 0.0, 0
        for b in range(0, len(order), settings.batch_size):
            idx = order[b : b + settings.batch_size]
            ids, labels, mask = (t.to(device) for t in _collate([rows[i] for i in idx], pad_id))
            with autocast:
                logits = model(input_ids=ids, attention_mask=mask).logits
            loss = weighted_token_loss(logits, labels, weights[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            opt.step()
            value = loss.item()
            if not math.isfinite(value):
                raise RuntimeError(f"training diverged (loss {value}); lower train.lr")
            report.losses.append(value)
            report.tokens += int(mask.sum())
            report.steps += 1
            epoch_loss += value
            epoch_batches += 1
            if settings.steps and report.steps >= settings.steps:
                break
        report.epoch_losses.append(epoch_loss / max(epoch_batches, 1))
    model.eval()
    report.seconds = time.perf_counter() - start
    return report


@torch.no_grad()
def mean_loss(model, tokenizer, formatter: PromptFormatter, examples: Sequence[Example],
              max_length: int = 256) -> float:
    """Mean answer-token loss of the model on examples (for tests and diagnostics)."""
    rows = encode(examples, tokenizer, formatter, max_length)
    ids, labels, mask = _collate(rows, tokenizer.pad_token_id)
    logits = model(input_ids=ids, attention_mask=mask).logits
    return weighted_token_loss(logits, labels, torch.ones(len(rows))).item()

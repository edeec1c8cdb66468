"""Train K users' adapters in one batched pass through one frozen base: the same
optimisation as K one-by-one runs of `clients.trainer.train_lora`.

Per step, each user still in its budget contributes its own next batch (its own data order
from its own seed); rows of all users go through the base together, each with its own
adapter (`StackedLora`). The loss is the sum over users of each user's token-normalised
loss, so a user's gradient is exactly its own. Clipping is per user; AdamW is element-wise
over the stacked weights with a step count per user, and a user whose budget is spent is
not updated again (no decay, no moment drift). Logits are computed only where the loss
is (answer tokens), in chunks, so a 262k vocabulary costs no full (batch, T, V) tensor.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from clients.answer_loss import answer_token_loss, decoder_and_head
from clients.settings import TrainSettings
from clients.stacked_adamw import StackedAdamW, clip_per_user
from clients.stacked_lora import StackedLora, frozen_weights_in
from clients.trainer import TrainReport, _collate, encode
from clients.training_attention import cpu_training_attention
from models.prompting import PromptFormatter
from tasks.catalog import Example


@dataclass
class CohortJob:
    """One user's training: examples, the seed of its data order, and where it starts
    (None: a fresh adapter from peft's initialisation with `init_seed`)."""

    examples: Sequence[Example]
    seed: int
    init_seed: int | None = None
    init_state: dict[str, torch.Tensor] | None = None  # peft state-dict names
    steps: int = 0  # 0: settings.steps / settings.epochs


def schedule(n: int, settings: TrainSettings, seed: int, steps: int = 0) -> list[list[int]]:
    """The user's batches (example indices), in the order `train_lora` takes them."""
    if n == 0:
        return []
    steps = steps or settings.steps
    gen = torch.Generator().manual_seed(seed)
    per_epoch = math.ceil(n / settings.batch_size)
    epochs = math.ceil(steps / per_epoch) if steps else settings.epochs
    out: list[list[int]] = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).tolist()
        for b in range(0, n, settings.batch_size):
            out.append(order[b : b + settings.batch_size])
            if steps and len(out) >= steps:
                return out
    return out


def train_cohort(peft_model, stack: StackedLora, tokenizer, formatter: PromptFormatter,
                 jobs: Sequence[CohortJob], settings: TrainSettings,
                 max_tokens: int = 0) -> list[TrainReport]:
    """Train every job's adapter into its slot of `stack`; one report per job.

    `max_tokens` bounds the padded tokens of one forward pass (0: no bound): a step whose
    users do not fit is run as several passes over groups of whole users, one optimiser
    step after them all, which changes nothing in the result.
    """
    K = len(jobs)
    reports = [TrainReport(examples=len(j.examples),
                           real_examples=sum(not e.synthetic for e in j.examples),
                           synthetic_examples=sum(e.synthetic for e in j.examples))
               for j in jobs]
    rows = [encode(j.examples, tokenizer, formatter, settings.max_length) for j in jobs]
    weights = [torch.tensor([1.0 if e.synthetic else settings.real_weight for e in j.examples])
               for j in jobs]
    plans = [schedule(len(r), settings, j.seed, j.steps) for r, j in zip(rows, jobs)]
    per_epoch = [math.ceil(len(r) / settings.batch_size) if r else 1 for r in rows]
    device = next(peft_model.parameters()).device
    low = torch.bfloat16 if settings.uses_bf16(device.type) else None
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if low
                else contextlib.nullcontext())
    decoder, head, cap = decoder_and_head(peft_model)
    params = stack.user_parameters()
    opt = StackedAdamW(params, K, settings.lr, settings.weight_decay)
    pad_id = tokenizer.pad_token_id
    epoch_sums = [[0.0, 0] for _ in jobs]
    start = time.perf_counter()
    peft_model.train()
    budget = max_tokens
    with (stack.active(), frozen_weights_in(peft_model, low),
          cpu_training_attention(peft_model, device)):
        head_w = head.weight.to(low) if low else head.weight  # cast once, not per pass
        for t in range(max(map(len, plans), default=0)):
            active = [k for k in range(K) if t < len(plans[k])]
            for p in params:
                p.grad = None
            while True:  # a step that does not fit is split into more passes, not crashed
                try:
                    losses = _grads(t, active, plans, rows, weights, budget, pad_id, device,
                                    stack, decoder, autocast, head_w, cap, low, K)
                    break
                except torch.OutOfMemoryError as err:
                    widest = max(_padded([k], plans, rows, t) for k in active)
                    if budget and budget <= widest:
                        raise torch.OutOfMemoryError(
                            f"one user's batch ({widest} padded tokens) does not fit: lower "
                            "device.train.batch_size or max_length, or set "
                            f"device.train.checkpointing = true ({err})") from err
                    budget = max(widest, (budget or _padded(active, plans, rows, t)) // 2)
                    for p in params:
                        p.grad = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
            for k in active:
                reports[k].tokens += sum(len(rows[k][i][0]) for i in plans[k][t])
            mask_k = torch.zeros(K, dtype=torch.bool)
            mask_k[active] = True
            for p in params:  # users not in this step must get no update at all
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            if settings.max_grad_norm > 0:
                clip_per_user(params, settings.max_grad_norm)
            opt.step(mask_k)
            for k, value in losses.items():
                r = reports[k]
                if not math.isfinite(value) or r.diverged:  # this user's failure alone:
                    r.diverged = True  # its cohort-mates' adapters are their own
                    continue
                r.losses.append(value)
                r.steps += 1
                epoch_sums[k][0] += value
                epoch_sums[k][1] += 1
                if r.steps % per_epoch[k] == 0 or r.steps == len(plans[k]):
                    r.epoch_losses.append(epoch_sums[k][0] / epoch_sums[k][1])
                    epoch_sums[k] = [0.0, 0]
    peft_model.eval()
    seconds = time.perf_counter() - start
    for r in reports:
        r.seconds = seconds / max(K, 1)  # each user's share of the cohort's time
    return reports


def _grads(t, active, plans, rows, weights, budget, pad_id, device, stack, decoder, autocast,
           head_w, cap, low, K) -> dict[int, float]:
    """Gradients of step t for the active users (accumulated over passes); their losses."""
    losses: dict[int, float] = {}
    for group in _groups(active, plans, rows, t, budget):
        batch = [(k, i) for k in group for i in plans[k][t]]
        ids, labels, mask = (x.to(device) for x in
                             _collate([rows[k][i] for k, i in batch], pad_id))
        row_user = torch.tensor([k for k, _ in batch], device=device)
        row_weight = torch.stack([weights[k][i] for k, i in batch]).to(device)
        stack.set_rows(row_user)
        with autocast:
            hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
        per_user = answer_token_loss(hidden, labels, row_weight, row_user, K, head_w, cap, low)
        mine = per_user.index_select(0, torch.tensor(group, device=device))
        mine.sum().backward()
        losses.update(zip(group, mine.tolist()))
    return losses


def _padded(active, plans, rows, t) -> int:
    n = sum(len(plans[k][t]) for k in active)
    return n * max(len(rows[k][i][0]) for k in active for i in plans[k][t])


def _groups(active: list[int], plans, rows, t: int, max_tokens: int) -> list[list[int]]:
    """Split this step's users into groups whose padded batch fits `max_tokens`."""
    if not max_tokens:
        return [active] if active else []
    groups: list[list[int]] = []
    cur: list[int] = []
    width = n = 0
    for k in active:
        lens = [len(rows[k][i][0]) for i in plans[k][t]]
        w2, n2 = max(width, *lens), n + len(lens)
        if cur and w2 * n2 > max_tokens:
            groups.append(cur)
            cur, w2, n2 = [], max(lens), len(lens)
        cur.append(k)
        width, n = w2, n2
    if cur:
        groups.append(cur)
    return groups

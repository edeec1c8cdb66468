"""A user's loss on each of its own profile items, through its adapter in a cohort's stack:
cdcda_active's weakness signal (computed on the device, on data that already left as seeds,
never on held-out queries)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from clients.answer_loss import answer_token_loss, decoder_and_head
from clients.settings import DeviceSettings
from clients.stacked_lora import StackedLora
from clients.trainer import _collate, encode
from tasks import Task


@torch.no_grad()
def item_losses(rt, stack: StackedLora, k: int, task: Task, items: Sequence[dict],
                settings: DeviceSettings) -> list[float]:
    """Token-normalised answer loss of slot k's adapter on each item (the mean over the
    training pairs an item makes: one for most tasks); 0.0 for an item that makes none."""
    pairs = [(i, ex) for i, it in enumerate(items) for ex in task.profile_pairs([it])]
    if not pairs:
        return [0.0] * len(items)
    rows = encode([ex for _, ex in pairs], rt.tokenizer, rt.formatter, settings.train.max_length)
    device = next(rt.model.parameters()).device
    ids, labels, mask = (x.to(device) for x in _collate(rows, rt.tokenizer.pad_token_id))
    decoder, head, cap = decoder_and_head(rt.model)
    n = len(rows)
    rt.model.eval()
    with stack.active():
        stack.set_rows(torch.full((n,), k, device=device))
        hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
    per_row = answer_token_loss(hidden, labels, torch.ones(n, device=device),
                                torch.arange(n, device=device), n, head.weight, cap, None)
    sums, counts = [0.0] * len(items), [0] * len(items)
    for (i, _), loss in zip(pairs, per_row.tolist()):
        sums[i] += loss
        counts[i] += 1
    return [s / c if c else 0.0 for s, c in zip(sums, counts)]

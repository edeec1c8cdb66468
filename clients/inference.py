"""On-device generation: batched greedy answers, with latency and memory figures."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from models.context import clip, context_tokens
from models.prompting import PromptFormatter


@dataclass
class GenerationReport:
    texts: list[str]
    seconds: float
    new_tokens: int
    ttft_seconds: float  # one query alone: prompt in, first token out

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


@torch.no_grad()
def generate(
    model,
    tokenizer,
    formatter: PromptFormatter,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 8,
    measure_ttft: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> GenerationReport:
    """Greedy answers to `prompts` (left-padded batches); texts exclude the prompt.

    `on_batch(start, end)` runs before prompts[start:end] are generated (a cohort uses it
    to tell each row's adapter)."""
    device = next(model.parameters()).device
    texts: list[str] = []
    new_tokens = 0
    ttft = 0.0
    # a prompt keeps its end, cut to the model's context less the answer's room: as text
    # first (a huge query is never tokenised whole), then as tokens
    room = max(context_tokens(model) - max_new_tokens, 1)

    def encode(texts: list[str], **kwargs):
        cut = [clip(formatter.prompt(t), room, tokenizer) for t in texts]
        return tokenizer(cut, return_tensors="pt", truncation=True, max_length=room,
                         **kwargs).to(device)

    if measure_ttft and prompts:
        enc = encode([prompts[0]])
        if on_batch:
            on_batch(0, 1)
        t0 = time.perf_counter()
        model.generate(**enc, max_new_tokens=1, do_sample=False)
        ttft = time.perf_counter() - t0
    start = time.perf_counter()
    for b in range(0, len(prompts), batch_size):
        batch = list(prompts[b : b + batch_size])
        enc = encode(batch, padding=True, add_special_tokens=False)
        if on_batch:
            on_batch(b, b + len(batch))
        out = model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        gen = out[:, enc["input_ids"].shape[1] :]
        for row in gen:
            keep = row[row != tokenizer.pad_token_id]
            new_tokens += int(keep.numel())
            texts.append(tokenizer.decode(keep, skip_special_tokens=True))
    return GenerationReport(texts, time.perf_counter() - start, new_tokens, ttft)


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA allocator peak if on GPU, else peak RSS."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024

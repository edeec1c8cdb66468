"""Nucleus (top-p) sampling without sorting or drawing over the whole vocabulary.

transformers samples a step in two passes over every row's 262,144 logits (Gemma's
vocabulary): TopPLogitsWarper sorts them (68 ms for 8 rows on 2 cores), then
torch.multinomial draws an exponential variate for each (35 ms). The nucleus is almost
always a few dozen tokens. TemperatureTopP takes the row's top `k` (a partial selection,
linear in the vocabulary) and keeps the tokens the warper keeps (those with less than
`top_p` of the mass above them); only a row whose top `k` hold less than `top_p` is sorted
in full. NucleusSampler then draws the token among those kept, with one uniform per row
from its own generator, and hands generate() a row where only that token is finite, so
generate runs greedy (an argmax) instead of its own draw. Same distribution, same kept
tokens; the random stream is the sampler's own, seeded per group of prompts.
"""

from __future__ import annotations

import torch


class TemperatureTopP:
    """transformers' TemperatureLogitsWarper then TopPLogitsWarper, as one logits
    processor (pass temperature=1.0 and top_p=1.0 to generate, so neither runs twice)."""

    def __init__(self, temperature: float, top_p: float, k: int = 256):
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(f"temperature {temperature} must be > 0, top_p {top_p} in (0, 1]")
        self.temperature, self.top_p, self.k = temperature, top_p, k

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores / self.temperature
        if self.top_p >= 1.0:
            return scores
        k = min(self.k, scores.shape[-1])
        top, idx = scores.softmax(dim=-1).topk(k, dim=-1)  # sorted, largest first
        above = top.cumsum(dim=-1) - top  # the mass of the tokens before each
        keep = above < self.top_p  # the first token (nothing above it) always stays
        out = torch.full_like(scores, -float("inf"))
        out.scatter_(-1, idx, torch.where(keep, scores.gather(-1, idx), -float("inf")))
        short = top.sum(dim=-1) < self.top_p  # the nucleus may reach past the top k
        if bool(short.any()):
            out[short] = _sorted_top_p(scores[short], self.top_p)
        return out


def _sorted_top_p(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """The warper's own rule (full sort), for the rare row with a flat distribution."""
    sorted_logits, sorted_idx = torch.sort(scores, descending=False)
    remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
    remove[..., -1:] = False
    return scores.masked_fill(remove.scatter(-1, sorted_idx, remove), -float("inf"))


class NucleusSampler:
    """Temperature and top-p sampling as a logits processor for generate(do_sample=False):
    it draws the next token itself (from `seed`'s generator) and leaves only that token's
    score finite, so generate's argmax takes it."""

    def __init__(self, temperature: float, top_p: float, seed: int, k: int = 256):
        self.nucleus = TemperatureTopP(temperature, top_p, k)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        kept = self.nucleus(input_ids, scores.float())
        rows = kept.shape[0]
        k = min(self.nucleus.k, kept.shape[-1])
        top, idx = kept.topk(k, dim=-1)  # the nucleus is within, unless a row is flat
        probs = top.softmax(dim=-1)  # -inf outside the nucleus: probability 0
        u = torch.rand(rows, 1, generator=self.generator)
        pick = (probs.cumsum(dim=-1) < u).sum(dim=-1).clamp(max=k - 1)
        # a pick past the nucleus (u above a cumsum rounded under 1): its last kept token
        pick = torch.minimum(pick, torch.isfinite(top).sum(dim=-1) - 1)
        token = idx.gather(-1, pick[:, None])
        flat = torch.isfinite(kept).sum(dim=-1) > k  # the nucleus is wider than the top k
        for r in torch.nonzero(flat).flatten().tolist():
            token[r, 0] = torch.multinomial(kept[r].softmax(-1), 1, generator=self.generator)
        out = torch.full_like(scores, -float("inf"))
        return out.scatter_(-1, token, 0.0)

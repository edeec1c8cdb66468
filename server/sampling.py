"""Nucleus (top-p) sampling without sorting the vocabulary.

transformers' TopPLogitsWarper sorts every row's logits at every step: over Gemma's
262,144-token vocabulary that sort was two thirds of the embedded cloud's time. The
nucleus is almost always a few dozen tokens, so this takes the row's top `k`
probabilities (a partial selection, linear in the vocabulary), keeps the tokens the
warper keeps (those with less than `top_p` of the mass above them), and sorts in full
only a row whose top `k` hold less than `top_p`. The tokens kept are the warper's, so
the sampled text is the same (up to float rounding of a cumulative sum exactly at the
`top_p` boundary).
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

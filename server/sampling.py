"""Nucleus (top-p) sampling without sorting or drawing over the whole vocabulary.

transformers samples a step in two passes over every row's 262,144 logits (Gemma's
vocabulary): TopPLogitsWarper sorts them (68 ms for 8 rows on 2 cores), then
torch.multinomial draws an exponential variate for each (35 ms). The nucleus is almost
always a few dozen tokens. `nucleus` takes a row's top `k` probabilities (a partial
selection, linear in the vocabulary) and keeps the tokens the warper keeps (those with
less than `top_p` of the mass above them); a row whose top `k` hold less than `top_p` (a
quarter of a 270M base model's rows at temperature 0.8) is taken again 16x wider, and only
a row flatter than that, or one whose nucleus ends at a near tie, is sorted in full, by the
warper's own rule. NucleusSampler then
draws the token among those kept with one uniform per row, and hands generate() a row
where only that token is finite, so generate runs greedy (an argmax) instead of its own
draw. Same distribution, same kept tokens; the random stream is the sampler's own: one
generator per seed, and each row draws from its own seed's (`rows`), so rows of several
users batched together draw what each user's rows would draw batched alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

WIDER = 16  # how much wider the next look at a row whose nucleus passed the top k
TIE = 1e-4  # a mass this close to top_p: float sums in another order may fall either side


def nucleus(scaled: torch.Tensor, top_p: float, k: int
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(rows, top probabilities in descending order, their token ids, kept) for groups of
    rows, each group's top reaching past its rows' nuclei (kept is a prefix of each).

    A row whose nucleus ends within TIE of `top_p` (where the warper's ascending sum and
    ours may round apart) is decided by the warper's own rule too."""
    probs = scaled.softmax(dim=-1)
    vocab = probs.shape[-1]
    rows, flat = torch.arange(probs.shape[0]), []
    first = True
    while rows.numel() and k < vocab:
        top, idx = (probs if first else probs[rows]).topk(k, dim=-1)  # sorted, largest first
        first = False
        above = top.cumsum(dim=-1) - top  # the mass of the tokens before each
        short = top.sum(dim=-1) < top_p  # the nucleus may reach past the top k
        close = ((above - top_p).abs() < TIE).any(dim=-1) & ~short
        done = ~short & ~close
        if bool(done.any()):
            yield rows[done], top[done], idx[done], (above < top_p)[done]
        flat.append(rows[close])
        rows, k = rows[short], k * WIDER
    flat = torch.cat([*flat, rows])
    if flat.numel():  # flatter than every look, or a near tie: sorted in full
        kept = torch.isfinite(_sorted_top_p(scaled[flat], top_p))
        top, idx = probs[flat].sort(dim=-1, descending=True)
        yield flat, top, idx, kept.gather(-1, idx)


def _sorted_top_p(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """The warper's own rule (full sort), for the rare row with a flat distribution."""
    sorted_logits, sorted_idx = torch.sort(scores, descending=False)
    remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
    remove[..., -1:] = False
    return scores.masked_fill(remove.scatter(-1, sorted_idx, remove), -float("inf"))


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
        out = torch.full_like(scores, -float("inf"))
        for rows, _, idx, keep in nucleus(scores, self.top_p, self.k):
            kept = torch.where(keep, scores[rows].gather(-1, idx), -float("inf"))
            out[rows] = out[rows].scatter(-1, idx, kept)
        return out


class NucleusSampler:
    """Temperature and top-p sampling as a logits processor for generate(do_sample=False):
    it draws the next token itself and leaves only that token's score finite, so
    generate's argmax takes it. Row r draws from the generator of `rows[r]` (set per
    batch; None: every row from `seed`'s)."""

    def __init__(self, temperature: float, top_p: float, seed: int, k: int = 256):
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(f"temperature {temperature} must be > 0, top_p {top_p} in (0, 1]")
        self.temperature, self.top_p, self.k = temperature, top_p, k
        self.seed = seed
        self.rows: list[int] | None = None
        self.generators: dict[int, torch.Generator] = {}
        # rows already finished (generate pads them whatever is drawn): no nucleus to find
        self.finished: Callable[[], torch.Tensor | None] = lambda: None

    def generator(self, seed: int) -> torch.Generator:
        if seed not in self.generators:
            self.generators[seed] = torch.Generator().manual_seed(seed)
        return self.generators[seed]

    def _uniforms(self, rows: int) -> torch.Tensor:
        """One uniform per row, each seed's rows drawn together from its generator (one
        seed: exactly torch.rand(rows, 1) from it)."""
        seeds = self.rows if self.rows is not None else [self.seed] * rows
        if len(seeds) != rows:
            raise ValueError(f"{len(seeds)} row seeds for {rows} rows")
        u = torch.empty(rows, 1)
        by_seed: dict[int, list[int]] = {}
        for r, s in enumerate(seeds):
            by_seed.setdefault(s, []).append(r)
        for s, idx in by_seed.items():
            u[idx] = torch.rand(len(idx), 1, generator=self.generator(s))
        return u

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        u = self._uniforms(scores.shape[0])
        scaled = scores.float() / self.temperature
        if self.top_p >= 1.0:  # every token is kept: the whole distribution
            cdf = scaled.softmax(dim=-1).cumsum(dim=-1)
            token = (cdf < u * cdf[:, -1:]).sum(dim=-1, keepdim=True)
            token = token.clamp(max=scores.shape[-1] - 1)
            return torch.full_like(scores, -float("inf")).scatter_(-1, token, 0.0)
        token = torch.zeros(scores.shape[0], 1, dtype=torch.long)
        finished = self.finished()
        live = None if finished is None else torch.nonzero(~finished).flatten()
        if live is not None and live.numel() < scores.shape[0]:
            for rows, top, idx, keep in nucleus(scaled[live], self.top_p, self.k):
                token[live[rows]] = self._pick(u[live[rows]], top, idx, keep)
            return torch.full_like(scores, -float("inf")).scatter_(-1, token, 0.0)
        for rows, top, idx, keep in nucleus(scaled, self.top_p, self.k):
            token[rows] = self._pick(u[rows], top, idx, keep)
        out = torch.full_like(scores, -float("inf"))
        return out.scatter_(-1, token, 0.0)

    @staticmethod
    def _pick(u: torch.Tensor, top: torch.Tensor, idx: torch.Tensor, keep: torch.Tensor
              ) -> torch.Tensor:
        """Each row's token: where its uniform falls in its nucleus' cumulative mass."""
        p = torch.where(keep, top, 0.0)
        cdf = p.cumsum(dim=-1) / p.sum(dim=-1, keepdim=True)
        pick = (cdf < u).sum(dim=-1)
        # a pick past the nucleus (u above a cdf rounded under 1): its last kept token
        pick = torch.minimum(pick, keep.sum(dim=-1) - 1)
        return idx.gather(-1, pick[:, None])

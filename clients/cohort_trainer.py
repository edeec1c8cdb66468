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
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from clients.settings import TrainSettings
from clients.stacked_lora import StackedLora, frozen_weights_in
from clients.trainer import IGNORE, TrainReport, _collate, encode
from models.prompting import PromptFormatter
from tasks.catalog import Example

LOGIT_CHUNK = 2048  # answer positions whose logits exist at once


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


class StackedAdamW:
    """torch's AdamW, element-wise over stacked (K, ...) weights, with a step per user."""

    def __init__(self, params: list[torch.nn.Parameter], users: int, lr: float,
                 weight_decay: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.wd, self.betas, self.eps = params, lr, weight_decay, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(users, dtype=torch.float64)

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """Update the users in `active` (bool, (K,)) only; others keep weights and moments."""
        idx = active.nonzero().flatten()
        if idx.numel() == 0:
            return
        self.steps[idx] += 1
        b1, b2 = self.betas
        t = self.steps[idx]
        step_size = self.lr / (1 - b1 ** t)  # float64; cast to each weight's dtype below
        bc2_sqrt = torch.sqrt(1 - b2 ** t)
        dev = self.params[0].device
        idx_d = idx.to(dev)
        for p, m, v in zip(self.params, self.m, self.v):
            shape = (-1,) + (1,) * (p.dim() - 1)
            w, g = p.data.index_select(0, idx_d), p.grad.index_select(0, idx_d)
            mm, vv = m.index_select(0, idx_d), v.index_select(0, idx_d)
            w.mul_(1 - self.lr * self.wd)
            mm.lerp_(g, 1 - b1)
            vv.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (vv.sqrt() / bc2_sqrt.to(dev, p.dtype).view(shape)).add_(self.eps)
            w.sub_(mm / denom * step_size.to(dev, p.dtype).view(shape))
            p.data.index_copy_(0, idx_d, w)
            m.index_copy_(0, idx_d, mm)
            v.index_copy_(0, idx_d, vv)


def clip_per_user(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale each user's gradient to at most `max_norm` (torch's clip_grad_norm_ per user)."""
    sq = sum(p.grad.pow(2).flatten(1).sum(1) for p in params)
    norms = sq.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(coef.view((-1,) + (1,) * (p.dim() - 1)))
    return norms


@contextlib.contextmanager
def cpu_training_attention(peft_model, device: torch.device):
    """On a CPU, train with transformers' eager attention instead of SDPA.

    torch's CPU flash-attention kernel is slow in backward for these short bf16
    sequences (measured at 64 rows x 83 tokens, 9 heads of 64: 102 ms backward against
    21 ms for the matmul-and-softmax form, which is exact attention too, softmax in fp32).
    GPUs keep SDPA, and so does a float64 model (eager's softmax is float32). The model's
    own choice is restored afterwards (generation keeps it).
    """
    lm = peft_model.get_base_model()
    before = getattr(lm.config, "_attn_implementation", None)
    if (device.type != "cpu" or before != "sdpa" or lm.dtype == torch.float64
            or not hasattr(lm, "set_attn_implementation")):
        yield
        return
    lm.set_attn_implementation("eager")
    try:
        yield
    finally:
        lm.set_attn_implementation(before)


def _heads(peft_model):
    """The causal LM's decoder (hidden states) and output head, with any logit soft-cap."""
    lm = peft_model.get_base_model()
    cap = getattr(lm.config, "final_logit_softcapping", None) or 0.0
    return lm.get_decoder(), lm.get_output_embeddings(), float(cap)


def _head_logits(hidden: torch.Tensor, head_weight: torch.Tensor, dtype) -> torch.Tensor:
    """The frozen head's logits, its matmul in `dtype`, returned in fp32 (fp64 if so)."""
    logits = F.linear(hidden.to(dtype), head_weight)
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _chunk_ce(head_weight: torch.Tensor, cap: float, dtype):
    def ce(hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = _head_logits(hidden, head_weight, dtype)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return F.cross_entropy(logits, targets, reduction="none")

    return ce


class _AnswerCE(torch.autograd.Function):
    """Per-token CE of a frozen head over chunks, its input gradient made in the forward.

    Each chunk's logits exist only while that chunk is worked on: the forward computes the
    chunk's CE and, at once, d CE / d hidden = (softmax - onehot) @ W, written out rather
    than through autograd (which would allocate log-probabilities, a zero-filled one-hot
    and their backward, each as large as the logits). Backward only scales those rows by
    the incoming gradient. No logits are kept and none are recomputed (checkpointing would
    compute the head's matmul and softmax twice).
    """

    @staticmethod
    def forward(ctx, hidden, targets, head_weight, cap, dtype):
        ces, grads = [], []
        for h, y in zip(hidden.split(LOGIT_CHUNK), targets.split(LOGIT_CHUNK)):
            z = _head_logits(h, head_weight, dtype)
            capped = None
            if cap:
                capped = torch.tanh(z / cap)
                z = capped * cap
            lse = torch.logsumexp(z, dim=-1, keepdim=True)
            ces.append(lse[:, 0] - z.gather(1, y[:, None])[:, 0])
            grad = z.sub_(lse).exp_()  # softmax, in place of the logits
            grad.scatter_add_(1, y[:, None], grad.new_full((len(y), 1), -1.0))
            if capped is not None:
                grad.mul_(1 - capped * capped)
            grads.append((grad.to(dtype) @ head_weight).to(hidden.dtype))
        ctx.save_for_backward(torch.cat(grads))
        return torch.cat(ces)

    @staticmethod
    def backward(ctx, grad_ce):
        (d_hidden,) = ctx.saved_tensors
        return d_hidden * grad_ce[:, None].to(d_hidden.dtype), None, None, None, None


def answer_token_loss(hidden: torch.Tensor, labels: torch.Tensor, row_weight: torch.Tensor,
                      row_user: torch.Tensor, users: int, head_weight: torch.Tensor,
                      cap: float, low: torch.dtype | None) -> torch.Tensor:
    """Per-user token-normalised weighted CE (K,), from logits of answer positions only."""
    target = labels[:, 1:]
    where = target != IGNORE
    h = hidden[:, :-1][where]
    y = target[where]
    w = row_weight[:, None].expand_as(target)[where]
    u = row_user[:, None].expand_as(target)[where]
    dtype = low or head_weight.dtype
    grad = torch.is_grad_enabled() and h.requires_grad
    if h.shape[0] == 0:
        ce = h.new_zeros(0, dtype=torch.promote_types(h.dtype, torch.float32))
    elif grad and not head_weight.requires_grad:
        ce = _AnswerCE.apply(h, y, head_weight, cap, dtype)
    else:  # no gradient, or a trainable head (autograd, each chunk checkpointed)
        ce_fn = _chunk_ce(head_weight, cap, dtype)
        ce = torch.cat([checkpoint(ce_fn, hc, yc, use_reentrant=False) if grad else ce_fn(hc, yc)
                        for hc, yc in zip(h.split(LOGIT_CHUNK), y.split(LOGIT_CHUNK))])
    num = torch.zeros(users, dtype=ce.dtype, device=ce.device).index_add(0, u, ce * w)
    den = torch.zeros(users, dtype=ce.dtype, device=ce.device).index_add(0, u, w.to(ce.dtype))
    return num / den.clamp_min(1e-8)


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
    low = torch.bfloat16 if settings.bf16 else None
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if low
                else contextlib.nullcontext())
    decoder, head, cap = _heads(peft_model)
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
                if not math.isfinite(value):
                    raise RuntimeError(f"training diverged (loss {value}); lower train.lr")
                r = reports[k]
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

"""Answer-token cross-entropy in logit chunks, so a large vocabulary never costs full logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from clients.trainer import IGNORE

LOGIT_CHUNK = 2048  # answer positions whose logits exist at once


def decoder_and_head(peft_model):
    """The causal LM's decoder (hidden states) and output head, with any logit soft-cap."""
    lm = peft_model.get_base_model()
    cap = getattr(lm.config, "final_logit_softcapping", None) or 0.0
    return lm.get_decoder(), lm.get_output_embeddings(), float(cap)


def _head_logits(hidden: torch.Tensor, head_weight: torch.Tensor,
                 dtype: torch.dtype) -> torch.Tensor:
    """The frozen head's logits, its matmul in `dtype`, returned in fp32 (fp64 if so)."""
    logits = F.linear(hidden.to(dtype), head_weight)
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _chunk_ce(head_weight: torch.Tensor, cap: float, dtype: torch.dtype):
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

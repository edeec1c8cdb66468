"""Where the embedded cloud's time goes, against what the machine allows.

Prefill is compute: its useful FLOPs over the measured matmul ceiling (in the cloud's
dtype). Decode is memory: each step reads every weight once, so the weight bytes over the
measured copy bandwidth bound a step from below; the share is that bound over the step's
measured time. Sampling is timed on its own, on the prompts' own next-token logits: transformers'
warpers and draw, and the NucleusSampler (server/sampling.py).
"""

from __future__ import annotations

import time

import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from models.context import clip, context_tokens
from server.sampling import NucleusSampler
from simulation.bench.ceiling import matmul_ceiling

FORMULA = ("prefill FLOPs = 2 x (non-embedding parameters) x prompt tokens + 2 x hidden x "
           "vocabulary per prompt (its last position's logits); decode bound per step = "
           "bytes of every parameter (the tied head read once) / measured copy bandwidth")


def copy_bandwidth(mib: int = 512, repeat: int = 5) -> float:
    """Bytes/s of copying a tensor far larger than the caches (a read and a write)."""
    a = torch.ones(mib * 2**20 // 4)
    b = torch.empty_like(a)
    b.copy_(a)
    start = time.perf_counter()
    for _ in range(repeat):
        b.copy_(a)
    return 2 * a.numel() * 4 * repeat / (time.perf_counter() - start)


def _params(model) -> tuple[int, int, int]:
    """(all parameters, non-embedding parameters, bytes of all parameters)."""
    emb = model.get_input_embeddings().weight
    seen, total, size = set(), 0, 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
            size += p.numel() * p.element_size()
    return total, total - emb.numel(), size


@torch.no_grad()
def split(llm, prompts: list[str], new_tokens: int) -> dict:
    """Prefill, decode and sampling time of one batch of `prompts` (greedy, no early stop),
    each with its share of the bound."""
    model, tok = llm.model, llm.tokenizer
    s = llm.settings
    room = max(context_tokens(model) - new_tokens, 1)
    enc = tok([clip(p, room, tok) for p in prompts], return_tensors="pt", padding=True,
              truncation=True, max_length=room)
    tokens = int(enc["attention_mask"].sum())
    model(**enc, logits_to_keep=1)  # warm up
    start = time.perf_counter()
    model(**enc, logits_to_keep=1)
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                   do_sample=False, pad_token_id=tok.pad_token_id)
    step = (time.perf_counter() - start - prefill) / max(new_tokens - 1, 1)
    vocab = model.get_output_embeddings().weight.shape[0]
    # the prompts' own next-token logits: a real distribution's nucleus, not noise's
    logits = model(**enc, logits_to_keep=1).logits[:, -1].float()
    ids = enc["input_ids"]
    sampling = {}
    for name, fn in (("transformers", lambda x: TopPLogitsWarper(s.top_p)(
                         ids, TemperatureLogitsWarper(s.temperature)(ids, x))),
                     ("fast", lambda x: NucleusSampler(s.temperature, s.top_p, 0)(ids, x))):
        fn(logits)
        start = time.perf_counter()
        for _ in range(5):  # transformers then draws over the vocabulary; fast has drawn
            scores = fn(logits)
            torch.multinomial(scores.softmax(-1), 1) if name == "transformers" \
                else scores.argmax(-1)
        sampling[name] = round((time.perf_counter() - start) / 5, 5)
    total, body, size = _params(model)
    hidden = model.get_input_embeddings().weight.shape[1]
    flops = 2 * body * tokens + 2 * hidden * vocab * len(prompts)
    weight = next(model.parameters())
    ceiling = matmul_ceiling(weight.device, weight.dtype, n=2048)
    bandwidth = copy_bandwidth()
    bound = size / bandwidth
    return {
        "batch": len(prompts), "prompt_tokens": tokens, "new_tokens": new_tokens,
        "prefill_seconds": round(prefill, 3),
        "prefill_tokens_per_second": round(tokens / prefill, 1),
        "prefill_share_of_matmul_ceiling": round(flops / prefill / ceiling, 4),
        "decode_seconds_per_step": round(step, 4),
        "decode_tokens_per_second": round(len(prompts) / step, 1),
        "decode_bound_seconds_per_step": round(bound, 4),
        "decode_share_of_bandwidth_bound": round(bound / step, 4),
        "sampling_seconds_per_step": sampling,
        "parameters": total, "non_embedding_parameters": body, "weight_bytes": size,
        "matmul_ceiling_tflops": round(ceiling / 1e12, 3),
        "copy_bandwidth_gb_per_second": round(bandwidth / 1e9, 2),
        "formula": FORMULA,
    }

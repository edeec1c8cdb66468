"""`cdcda bench train`: users trained one by one with peft, vs the cohort trainer at K = 1
and at K, on the same users in one run, with the machine's own matmul ceiling (JSON).

Each path runs `--repeat` times in alternating order (a b c, c b a, ...) and the fastest
repetition counts, so a machine whose load drifts disturbs the ratios less.

(a) is today's naive device loop (peft, one user after another); (b) is the cohort
trainer given one user at a time, so (b)/(a) is what its other choices buy (bf16 base
weights cast once, logits only where the loss is); (c)/(b) is what batching K users buys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from models.allocator import describe as allocator
from simulation.bench.ceiling import matmul_ceiling, sync

FLOPS_FORMULA = (
    "per train token: 4*N_body (base forward 2*N_body + backward for activations only "
    "2*N_body; frozen base: no weight gradients) + 6*N_lora (LoRA forward, input and "
    "weight gradients) + 4*L*T*d_attn (attention scores and values, forward and backward "
    "for activations, T = mean padded length); per answer token also 4*V*d (output head "
    "forward and backward). N_body = parameters of the decoder's linear layers. The same "
    "useful FLOPs are counted for every path: full-vocabulary logits over prompt tokens "
    "(path a computes them) are not useful work."
)


def _shape(rt) -> dict:
    """Parameter counts and sizes the FLOP formula needs."""
    from clients.stacked_lora import lora_layers

    lm = rt.model.get_base_model()
    head = lm.get_output_embeddings()
    body = sum(m.weight.numel() for m in lm.get_decoder().modules()
               if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad)
    lora = sum(m.lora_A["default"].weight.numel() + m.lora_B["default"].weight.numel()
               for _, m in lora_layers(rt.model))
    cfg = lm.config
    heads = getattr(cfg, "num_attention_heads", 1)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return {"body": body, "lora": lora, "layers": cfg.num_hidden_layers,
            "attn_dim": heads * head_dim, "vocab": head.weight.shape[0],
            "hidden": head.weight.shape[1]}


def useful_flops(shape: dict, tokens: int, answer_tokens: int, mean_len: float) -> float:
    return (tokens * (4 * shape["body"] + 6 * shape["lora"]
                      + 4 * shape["layers"] * mean_len * shape["attn_dim"])
            + answer_tokens * 4 * shape["vocab"] * shape["hidden"])


def _jobs(data, users, run_seed, examples: int):
    from clients.cohort_trainer import CohortJob
    from tasks.seeding import user_seed

    jobs = []
    for u in users:
        pairs = data.train_pairs(u)
        if examples:  # cycle the user's examples to exactly `examples`
            pairs = [pairs[i % len(pairs)] for i in range(examples)]
        seed = user_seed(run_seed, u)
        jobs.append(CohortJob(pairs, seed=seed, init_seed=seed))
    return jobs


def _one_by_one(rt, jobs, settings):
    from clients.adapter_slot import adapter_state, reset_adapter
    from clients.trainer import train_lora

    states = []
    for job in jobs:
        reset_adapter(rt.model, job.init_seed)
        train_lora(rt.model, rt.tokenizer, rt.formatter, job.examples, settings.train, job.seed)
        states.append(adapter_state(rt))
    return states


def _cohorts(rt, jobs, settings, k: int):
    from clients import cohort
    from clients.adapter_slot import adapter_state

    states = []
    for s in range(0, len(jobs), k):
        trained = cohort.train(rt, jobs[s : s + k], settings)
        for i in range(len(jobs[s : s + k])):
            trained.stack.to_slot(i)
            states.append(adapter_state(rt))
    return states


def _timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def main(args: argparse.Namespace) -> int:
    from clients import device as dev
    from clients.cohort import pass_tokens as cohort_pass_tokens
    from clients.trainer import IGNORE, encode
    from simulation.config import DEFAULT_CONFIG, load_config
    from simulation.running.experiment import prepare_data

    sets = list(args.set or [])
    cfg = load_config(args.config or DEFAULT_CONFIG, sets)
    if cfg.experiment.users < args.users:
        cfg = load_config(args.config or DEFAULT_CONFIG, [*sets, f"experiment.users={args.users}"])
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, split, task = prepare_data(cfg, Path(args.out) if args.out else Path(tmp))
        data = dev.dataset(str(data_dir), split, task)
    rt = dev.runtime(cfg.device)
    device = next(rt.model.parameters()).device
    users = data.user_ids()[: args.users]
    jobs = _jobs(data, users, cfg.experiment.seed, args.examples)
    # what every path trains: the same rows, so tokens and useful FLOPs are shared
    from clients.cohort_trainer import schedule

    tokens = answer = padded = trained_rows = 0
    for job in jobs:
        rows = encode(job.examples, rt.tokenizer, rt.formatter, cfg.device.train.max_length)
        for batch in schedule(len(rows), cfg.device.train, job.seed, job.steps):
            lens = [len(rows[i][0]) for i in batch]
            tokens += sum(lens)
            padded += max(lens) * len(lens)
            trained_rows += len(lens)
            answer += sum(sum(t != IGNORE for t in rows[i][1]) for i in batch)
    shape = _shape(rt)
    flops = useful_flops(shape, tokens, answer, tokens / max(trained_rows, 1))
    # First-call costs out of the timings, each path at its own shapes: the first pass at
    # a new batch size costs about twice a later one on a CPU (memory first touched, kernels
    # chosen), and a real device pays it once per process, not once per cohort.
    warm = [dataclasses.replace(j, steps=1) for j in jobs[: args.cohort]]
    _one_by_one(rt, warm[:1], cfg.device)
    _cohorts(rt, warm[:1], cfg.device, 1)
    _cohorts(rt, warm, cfg.device, args.cohort)
    paths = {"a": lambda: _one_by_one(rt, jobs, cfg.device),
             "b": lambda: _cohorts(rt, jobs, cfg.device, 1),
             "c": lambda: _cohorts(rt, jobs, cfg.device, args.cohort)}
    names = {"a": "one by one with peft", "b": "cohort trainer at K = 1",
             "c": f"cohort trainer at K = {args.cohort}"}
    times: dict[str, list[float]] = {p: [] for p in paths}
    states = {}
    repeat = max(1, args.repeat)
    for r in range(repeat):  # a b c, then c b a: a load that drifts hits every path alike
        for p in ("abc" if r % 2 == 0 else "cba"):
            states[p], seconds = _timed(paths[p], device)
            times[p].append(seconds)
            print(f"bench train: ({p}) {names[p]}, repeat {r + 1}/{repeat}: {seconds:.1f} s",
                  file=sys.stderr, flush=True)  # stdout carries only the JSON
    a_s, b_s, c_s = (min(times[p]) for p in "abc")  # the least disturbed repetition
    a_states, c_states = states["a"], states["c"]
    bf16 = cfg.device.train.uses_bf16(device.type)
    ceiling_dtype = torch.bfloat16 if bf16 else torch.float32  # what the matmuls run in
    ceiling = matmul_ceiling(device, ceiling_dtype)
    drift = max((a[n] - c[n]).abs().max().item() for a, c in zip(a_states, c_states) for n in a)
    rel_drift = max(((a[n] - c[n]).norm() / a[n].norm().clamp_min(1e-12)).item()
                    for a, c in zip(a_states, c_states) for n in a)

    def path(seconds: float, p: str) -> dict:
        return {"seconds": round(seconds, 4), "all_seconds": [round(x, 4) for x in times[p]],
                "users_per_minute": round(60 * len(jobs) / seconds, 2),
                "train_tokens_per_second": round(tokens / seconds, 1),
                "achieved_tflops": round(flops / seconds / 1e12, 4),
                "mfu": round(flops / seconds / ceiling, 4)}

    out = {
        "model": cfg.device.model, "task": task, "device": str(device),
        "torch_threads": torch.get_num_threads(), "allocator": allocator(),
        "users": len(jobs), "cohort": args.cohort,
        "recipe": {"lora_rank": cfg.device.lora.rank,
                   "target_modules": cfg.device.lora.target_modules,
                   "examples_per_user": round(sum(len(j.examples) for j in jobs) / len(jobs), 1),
                   "batch_size": cfg.device.train.batch_size,
                   "epochs": cfg.device.train.epochs, "steps": cfg.device.train.steps,
                   "max_length": cfg.device.train.max_length, "bf16": bf16,
                   "pass_tokens": cohort_pass_tokens(cfg.device.train, device),
                   "checkpointing": cfg.device.train.checkpointing},
        "train_tokens": tokens, "answer_tokens": answer, "padded_tokens_one_by_one": padded,
        "model_shape": shape, "useful_flops": flops, "flops_formula": FLOPS_FORMULA,
        "ceiling_tflops_matmul": round(ceiling / 1e12, 3),
        "ceiling_dtype": str(ceiling_dtype).removeprefix("torch."),
        "repeat": repeat,
        "a_one_by_one_peft": path(a_s, "a"),
        "b_cohort_k1": path(b_s, "b"),
        f"c_cohort_k{args.cohort}": path(c_s, "c"),
        "ratio_c_over_a": round(a_s / c_s, 3),
        "ratio_c_over_b": round(b_s / c_s, 3),
        "ratio_b_over_a": round(a_s / b_s, 3),
        # in bf16 an element whose gradient is rounding noise moves +-lr a step either way
        # (AdamW normalises it); the relative norm says how far the adapters are apart
        "max_adapter_difference_a_vs_c": drift,
        "max_relative_adapter_difference_a_vs_c": rel_drift,
    }
    print(json.dumps(out))
    return 0

"""One simulated device: its base model (cached per worker), local training and evaluation.

Flower-free, so it can be driven from the ClientApp, tests and benchmarks alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from clients import cohort
from clients.cohort_trainer import CohortJob
from clients.inference import GenerationReport, peak_memory_mb
from clients.node import serving_node
from clients.settings import DeviceSettings
from clients.storage import adapter_dir, save_adapter
from models import PromptFormatter, load_model
from tasks import LampData, Task, UserData, load_lamp_dir
from tasks.files import write_json
from tasks.seeding import user_seed
from tasks.structured import to_mapping


@dataclass
class DeviceRuntime:
    """The frozen base model wrapped once with a LoRA slot that each user re-initialises."""

    model: torch.nn.Module  # PeftModel
    tokenizer: object
    formatter: PromptFormatter
    load_seconds: float


# Per-worker-process caches (the one allowed global state): a ClientApp object is rebuilt
# for every message, the Ray worker process is not, so the base model loads once.
_RUNTIMES: dict[str, DeviceRuntime] = {}
_DATA: dict[tuple[str, str, str], LampData] = {}


def runtime(settings: DeviceSettings) -> DeviceRuntime:
    from peft import get_peft_model

    key = json.dumps([settings.model, settings.dtype, settings.accelerator, settings.prompt_style,
                      to_mapping(settings.lora)], sort_keys=True)
    if key not in _RUNTIMES:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        loaded = load_model(settings.model, settings.dtype, settings.accelerator)
        peft_model = get_peft_model(loaded.model, settings.lora.peft_config())
        peft_model.eval()
        _RUNTIMES.clear()  # one base per process: never keep two copies resident
        _RUNTIMES[key] = DeviceRuntime(peft_model, loaded.tokenizer,
                                       PromptFormatter(loaded.tokenizer, settings.prompt_style),
                                       loaded.load_seconds)
    return _RUNTIMES[key]


def dataset(data_dir: str, split: str, task: str) -> LampData:
    key = (str(data_dir), split, task)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_lamp_dir(data_dir, split, task)
    return _DATA[key]


def held_out(user: UserData, settings: DeviceSettings):
    """The user's queries a device answers: at most `eval.max_queries` (0: all)."""
    q = user.queries
    return q[: settings.eval.max_queries] if settings.eval.max_queries else q


# How a method turns a user's query into the device's prompt (profile_prompt retrieves
# profile items into it); None: the query's own prompt.
Prompting = Callable[[Task, UserData, DeviceSettings, str], str]


def _prompts(task: Task, user: UserData, settings: DeviceSettings,
             prompting: Prompting | None) -> list[str]:
    prompts = [q.prompt for q in held_out(user, settings)]
    if prompting is not None:
        prompts = [prompting(task, user, settings, p) for p in prompts]
    return prompts


def write_predictions(run_dir: str | Path, method: str, user: UserData, queries,
                      raws: list[str], preds: list[str]) -> None:
    """predictions/<method>/<user>.json: each query's raw answer, parsed answer and gold,
    and the node that served the user."""
    write_json(Path(run_dir) / "predictions" / method / f"{user.user_id}.json", {
        "user_id": user.user_id, "method": method, "node": serving_node(),
        "predictions": [{"id": q.id, "raw": r, "output": p, "gold": q.output}
                        for q, r, p in zip(queries, raws, preds)],
    })


def score_user(task: Task, user: UserData, settings: DeviceSettings, method: str,
               run_dir: Path | None, texts: list[str], report: GenerationReport,
               share: float) -> dict[str, float]:
    """Score one user's answers on the device and store its predictions."""
    queries = held_out(user, settings)
    preds = [task.parse(t) for t in texts]
    golds = [q.output for q in queries]
    metrics = task.score(preds, golds) if all(golds) else {}
    if run_dir is not None:
        write_predictions(run_dir, method, user, queries, texts, preds)
    return {
        **metrics,
        "num-queries": len(queries),
        "gen-seconds": report.seconds * share,  # this user's share of the cohort's time
        "ttft-seconds": report.ttft_seconds,
        "tokens-per-second": report.tokens_per_second,
    }


def evaluate_users(rt: DeviceRuntime, task: Task, users: list[UserData],
                   settings: DeviceSettings, method: str, run_dir: Path | None,
                   use_adapter: bool = False, stack=None, prompting: Prompting | None = None
                   ) -> dict[str, dict[str, float]]:
    """Answer a cohort's held-out queries, all users in shared batches, and score each:
    through each user's own adapter (`stack`), peft's slot (`use_adapter`) or the base."""
    prompts = [_prompts(task, u, settings, prompting) for u in users]
    max_new = settings.eval.max_new_tokens or task.max_new_tokens
    texts, report = cohort.answer(rt, prompts, max_new, settings.eval.batch_size, stack,
                                  use_adapter)
    total = max(sum(map(len, prompts)), 1)
    return {u.user_id: score_user(task, u, settings, method, run_dir, t, report,
                                  len(p) / total)
            for u, p, t in zip(users, prompts, texts)}


def evaluate_user(rt: DeviceRuntime, task: Task, user: UserData, settings: DeviceSettings,
                  method: str, run_dir: Path | None, use_adapter: bool,
                  prompting: Prompting | None = None) -> dict[str, float]:
    """Answer one user's held-out queries on the device and score them."""
    return evaluate_users(rt, task, [user], settings, method, run_dir, use_adapter,
                          prompting=prompting)[user.user_id]


def train_users(rt: DeviceRuntime, task: Task, users: list[UserData],
                synthetic: dict[str, list[dict]], settings: DeviceSettings, method: str,
                run_dir: Path | None, run_seed: int, adapters: str | None = None,
                init_state: dict[str, torch.Tensor] | None = None
                ) -> dict[str, dict[str, float] | Exception]:
    """Train a cohort's own adapters on real (+ synthetic) data together, save each in
    peft's format under `run_dir/<adapters>/<user>/` (default `adapters-<method>`),
    evaluate each with its own adapter; metrics by user id. Each adapter starts fresh, or
    from `init_state` (a received adapter to fine-tune). A user whose adapter is not finite
    gets a NonFiniteAdapter in place of its metrics, and no saved adapter."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    jobs = []
    for u in users:
        seed = user_seed(run_seed, u.user_id)
        synth = synthetic.get(u.user_id) or []
        examples = task.profile_pairs(u.profile) + (
            task.profile_pairs(synth, synthetic=True) if synth else [])
        jobs.append(CohortJob(examples, seed=seed, init_seed=seed, init_state=init_state))
    trained = cohort.train(rt, jobs, settings)
    finite = [ok and not r.diverged for ok, r in
              zip(finite_users(trained.stack.user_parameters(), len(users)), trained.reports)]
    sizes = {}
    for k, u in enumerate(users):
        if not finite[k]:  # never saved: a user's adapter of NaN/inf is its failure
            continue
        trained.stack.to_slot(k)
        sizes[u.user_id] = save_adapter(
            rt.model, adapter_dir(run_dir, adapters or f"adapters-{method}", u.user_id)) \
            if run_dir is not None else 0
    evaluated = evaluate_users(rt, task, users, settings, method, run_dir, stack=trained.stack)
    trainable = sum(p[0].numel() for p in trained.stack.user_parameters())
    seconds = (time.perf_counter() - start) / len(users)
    out: dict = {}
    for k, (u, report) in enumerate(zip(users, trained.reports)):
        if not finite[k]:
            out[u.user_id] = NonFiniteAdapter(
                f"user {u.user_id}'s training diverged (a loss or a weight went NaN or "
                f"inf after {report.steps} finite steps): lower device.train.lr")
            continue
        out[u.user_id] = {
            **evaluated[u.user_id],
            "num-examples": report.examples,
            "num-real": report.real_examples,
            "num-synthetic": report.synthetic_examples,
            "train-steps": report.steps,
            "train-tokens": report.tokens,
            "train-seconds": report.seconds,
            "seconds-per-step": report.seconds_per_step,
            "first-loss": report.epoch_losses[0] if report.epoch_losses else 0.0,
            "last-loss": report.epoch_losses[-1] if report.epoch_losses else 0.0,
            "adapter-bytes": sizes[u.user_id],
            "trainable-params": trainable,
            "cohort-size": len(users),
            "user-seconds": seconds,
            "peak-memory-mb": peak_memory_mb(),
        }
    return out


class NonFiniteAdapter(ArithmeticError):
    """Training left a user's adapter with NaN or inf weights (the server counts it as its
    own failure kind, `non_finite`, by this class name)."""


def finite_users(stacked: list[torch.Tensor], users: int) -> list[bool]:
    """Per user, whether every weight of its slot in the stacked (K, ...) tensors is finite."""
    ok = torch.ones(users, dtype=torch.bool)
    for p in stacked:
        ok &= torch.isfinite(p.detach().reshape(users, -1)).all(dim=1).cpu()
    return ok.tolist()


def train_user(rt: DeviceRuntime, task: Task, user: UserData, synthetic: list[dict],
               settings: DeviceSettings, method: str, run_dir: Path | None,
               run_seed: int, adapters: str | None = None) -> dict[str, float]:
    """Train, save and evaluate one user's adapter (a cohort of one)."""
    return train_users(rt, task, [user], {user.user_id: synthetic}, settings, method,
                       run_dir, run_seed, adapters)[user.user_id]

"""Cloud LLM backends behind one interface: embedded transformers, or any OpenAI-compatible API.

`complete(prompts)` returns one sampled continuation per prompt, or a `CloudError` naming
why that request failed (never an empty string standing for a failure: an outage must not
look like a model that wrote nothing usable). Each prompt carries a seed (its random
stream: one per user) and may carry a batch key: prompts with the same key are a group,
batched together, so the embedded backend fills its batches with several users' rows
(a SuperNode's users, `cloud.batch_by = "node"`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import LogitsProcessorList, StoppingCriteriaList

from models.context import clip, context_tokens
from server.embedded_model import load_once, resolve_dtype
from server.sampling import NucleusSampler
from server.settings import CloudSettings

log = logging.getLogger(__name__)

STOP = "\n\n"
STOP_POLL = 0.2  # seconds between looks at should_stop while HTTP requests are out


@dataclass(frozen=True)
class CloudError:
    """A request the cloud did not answer: `cause` is e.g. connection, timeout, http_500,
    bad_response, injected_outage."""

    cause: str


Completion = str | CloudError


Seeds = int | Sequence[int]


class CloudLLM(Protocol):
    name: str

    def complete(self, prompts: Sequence[str], seed: Seeds, greedy: bool = False,
                 max_new_tokens: int | None = None, batch: Seeds | None = None
                 ) -> list[Completion]:
        """One continuation per prompt, cut at the first blank line, or a CloudError.

        `seed` is one seed for all prompts or one per prompt: a prompt's random stream.
        Prompts that share a batch key (`batch`; without it, their seed) are a group: a
        completion depends on its group only, never on what else was asked in the same
        call, so a user's synthetic data is the same whoever else is augmented with it
        (a retry, a resume, a stream, a replica)."""
        ...


def per_prompt(values: Seeds, n: int, what: str = "seeds") -> list[int]:
    """One int per prompt, from one for all or one each."""
    out = [values] * n if isinstance(values, int) else [int(v) for v in values]
    if len(out) != n:
        raise ValueError(f"{len(out)} {what} for {n} prompts")
    return out


def groups(prompts: Sequence[str], seed: Seeds, batch: Seeds | None = None
           ) -> list[tuple[int, list[int]]]:
    """(batch key, prompt indices) per group, in order of first appearance; without
    batch keys a group is the prompts that share a seed."""
    seeds = per_prompt(seed, len(prompts))
    keys = seeds if batch is None else per_prompt(batch, len(prompts), "batch keys")
    out: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return list(out.items())


def error_cause(err: Exception) -> str:
    """A short, stable name for why a request failed (no message text: it may hold keys)."""
    import openai

    if isinstance(err, openai.APITimeoutError):
        return "timeout"
    if isinstance(err, openai.APIConnectionError):
        return "connection"
    if isinstance(err, openai.APIStatusError):
        return f"http_{err.status_code}"
    if isinstance(err, openai.APIResponseValidationError | ValueError | KeyError | IndexError
                  | AttributeError | TypeError):
        return "bad_response"
    return type(err).__name__


def _cut(text: str) -> str:
    return text.split(STOP, 1)[0]


class BlankLineStop:
    """Stop a row once it has produced a blank line, checked on token ids (no decoding).

    transformers' generic `stop_strings` re-scans the vocabulary and costs ~40% extra per
    call with Gemma's 262k-token vocabulary; a blank line is either one token holding
    "\n\n" or a token ending in "\n" followed by one starting with it.
    """

    def __init__(self, tokenizer, should_stop: Callable[[], bool] = lambda: False):
        self.should_stop = should_stop
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        text = [tokenizer.convert_tokens_to_string([t]) if t is not None else "" for t in vocab]
        self.double = torch.tensor([i for i, t in enumerate(text) if STOP in t])
        self.ends = torch.tensor([i for i, t in enumerate(text) if t.endswith("\n")])
        self.starts = torch.tensor([i for i, t in enumerate(text) if t.startswith("\n")])
        self.prompt_len = 0
        self.hit: torch.Tensor | None = None  # rows finished so far in this batch

    def begin(self, prompt_len: int) -> None:
        """A new batch: its prompts are this long, and no row has finished."""
        self.prompt_len, self.hit = prompt_len, None

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        new = input_ids[:, self.prompt_len :]
        if self.double.device != new.device:
            self.double, self.ends, self.starts = (
                t.to(new.device) for t in (self.double, self.ends, self.starts))
        if self.should_stop():  # the run is stopping: end every row now
            return torch.ones(input_ids.shape[0], dtype=torch.bool, device=new.device)
        if new.shape[1] == 0:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=new.device)
        # (B,) whether any generated position holds a blank line so far
        hit = torch.isin(new, self.double).any(dim=1)
        if new.shape[1] >= 2:
            pair = torch.isin(new[:, :-1], self.ends) & torch.isin(new[:, 1:], self.starts)
            hit |= pair.any(dim=1)
        self.hit = hit
        return hit


class EmbeddedLLM:
    """A transformers causal LM in this process, with length-sorted batched sampling."""

    def __init__(self, settings: CloudSettings, should_stop: Callable[[], bool] = lambda: False):
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.settings = settings
        loaded = load_once(settings)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.name = f"embedded:{settings.model}"
        self.dtype = resolve_dtype(settings)
        self.load_seconds = loaded.load_seconds
        self.generated_tokens = 0
        self.should_stop = should_stop
        self.stop = BlankLineStop(self.tokenizer, should_stop)

    @torch.no_grad()
    def complete(self, prompts: Sequence[str], seed: Seeds, greedy: bool = False,
                 max_new_tokens: int | None = None, batch: Seeds | None = None
                 ) -> list[Completion]:
        s = self.settings
        seeds = per_prompt(seed, len(prompts))
        out: list[Completion] = [CloudError("stopped")] * len(prompts)
        for key, members in groups(prompts, seed, batch):
            # a group is batched on its own, seeded on its own: its rows' padding, batch
            # mates and random draws are its own whatever else is asked; each row draws
            # from its own seed's generator
            torch.manual_seed(key)
            sampler = NucleusSampler(s.temperature, s.top_p, key) \
                if s.sampler == "fast" and not greedy and s.temperature > 0 else None
            # sort by length so each batch pads little; results go back in input order
            order = sorted(members, key=lambda i: len(prompts[i]))
            for b in range(0, len(order), s.batch_size):
                if self.should_stop():
                    return out  # the rest stay CloudError("stopped"): nothing half-done
                idx = order[b : b + s.batch_size]
                if sampler is not None:
                    sampler.rows = [seeds[i] for i in idx]
                try:
                    self._batch(prompts, idx, greedy, out, max_new_tokens or s.max_new_tokens,
                                sampler)
                except (RuntimeError, ValueError) as err:  # e.g. out of memory: count, go on
                    log.warning("embedded cloud batch failed: %s", err)
                    for i in idx:
                        out[i] = CloudError(f"embedded_{type(err).__name__}")
        return out

    def _batch(self, prompts: Sequence[str], idx: list[int], greedy: bool,
               out: list[Completion], max_new_tokens: int,
               sampler: NucleusSampler | None = None) -> None:
        s = self.settings
        room = max(context_tokens(self.model) - max_new_tokens, 1)  # the prompt keeps its end
        enc = self.tokenizer([clip(prompts[i], room, self.tokenizer) for i in idx],
                             return_tensors="pt", padding=True, truncation=True,
                             max_length=room)
        enc = enc.to(self.model.device)
        self.stop.begin(enc["input_ids"].shape[1])
        sample = not greedy and s.temperature > 0
        if sampler is not None:  # it draws the token itself: generate only takes it
            sample = False
            sampler.finished = lambda: self.stop.hit
            how = dict(logits_processor=LogitsProcessorList([sampler]))
        else:
            how = dict(temperature=s.temperature if sample else None,
                       top_p=s.top_p if sample else None)
        gen = self.model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=sample, top_k=None, **how,
            stopping_criteria=StoppingCriteriaList([self.stop]),
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new = gen[:, enc["input_ids"].shape[1] :]
        self.generated_tokens += int((new != self.tokenizer.pad_token_id).sum())
        for i, row in zip(idx, new):
            out[i] = _cut(self.tokenizer.decode(row, skip_special_tokens=True))
        if self.should_stop():  # rows cut short by the stop are not real answers
            for i in idx:
                out[i] = CloudError("stopped")


class OpenAILLM:
    """Any OpenAI-compatible endpoint; the API key is read from an environment variable."""

    def __init__(self, settings: CloudSettings, should_stop: Callable[[], bool] = lambda: False):
        from openai import OpenAI

        o = settings.openai
        self.settings = settings
        self.should_stop = should_stop
        self.name = f"openai:{o.model}"
        key = os.environ.get(o.api_key_env) or "not-needed"  # local servers take any key
        self.client = OpenAI(base_url=o.base_url, api_key=key, timeout=o.timeout,
                             max_retries=o.max_retries)
        self.failures = 0

    def _one(self, prompt: str, seed: int, greedy: bool, max_new_tokens: int | None = None
             ) -> Completion:
        o, s = self.settings.openai, self.settings
        args = dict(model=o.model, max_tokens=max_new_tokens or s.max_new_tokens, seed=seed,
                    temperature=0.0 if greedy else s.temperature, top_p=s.top_p, stop=[STOP])
        try:
            if o.api == "completions":
                r = self.client.completions.create(prompt=prompt, **args)
                return _cut(r.choices[0].text or "")
            r = self.client.chat.completions.create(
                messages=[{"role": "user", "content": "Continue this text with exactly one more"
                           " example in the same format, and nothing else.\n\n" + prompt}],
                **args,
            )
            return _cut(r.choices[0].message.content or "")
        except Exception as err:  # counted by cause: the run goes on with what it has
            if self.should_stop():  # a request the stop abandoned: not the cloud's failure
                return CloudError("stopped")
            self.failures += 1
            cause = error_cause(err)
            log.warning("cloud request failed after %d retries: %s", o.max_retries, cause)
            return CloudError(cause)

    def complete(self, prompts: Sequence[str], seed: Seeds, greedy: bool = False,
                 max_new_tokens: int | None = None, batch: Seeds | None = None
                 ) -> list[Completion]:
        """Every prompt's completion, `concurrency` requests at a time, across groups; the
        j-th prompt of a seed is sent with that seed + j (each request is its own: batch
        keys do not apply). A stop (SIGINT,
        SIGTERM) is seen within STOP_POLL seconds: requests not answered yet come back as
        CloudError("stopped") at once, not after the endpoint's slowest answer."""
        start = time.perf_counter()
        out: list[Completion] = [CloudError("stopped")] * len(prompts)
        request_seed = {i: group_seed + j for group_seed, members in groups(prompts, seed)
                        for j, i in enumerate(members)}
        pool = ThreadPoolExecutor(self.settings.openai.concurrency)
        futures = {pool.submit(self._one, p, request_seed[i], greedy, max_new_tokens): i
                   for i, p in enumerate(prompts)}
        pending = set(futures)
        try:
            while pending and not self.should_stop():
                done, pending = wait(pending, timeout=STOP_POLL, return_when=FIRST_COMPLETED)
                for f in done:
                    out[futures[f]] = f.result()
        finally:  # on a stop, requests in flight finish in their threads, unread
            pool.shutdown(wait=not pending, cancel_futures=True)
        log.debug("%d completions in %.1f s", len(prompts), time.perf_counter() - start)
        return out

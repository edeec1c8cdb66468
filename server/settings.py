"""Cloud-side settings: which LLM writes synthetic data, and how candidates are filtered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tasks.structured import check


@dataclass
class OpenAISettings:
    base_url: str = field(default="http://127.0.0.1:8000/v1",
                          metadata={"help": "OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama)"})
    model: str = field(default="", metadata={"help": "model name the endpoint serves"})
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "environment variable holding the key; never logged"},
    )
    api: Literal["chat", "completions"] = "completions"
    concurrency: int = field(default=8, metadata={"help": "requests in flight"})
    timeout: float = field(default=60.0, metadata={"help": "seconds per request"})
    max_retries: int = field(default=3, metadata={"help": "retries with exponential backoff"})

    def __post_init__(self) -> None:
        check(self.concurrency >= 1, "concurrency", "must be >= 1")
        check(self.timeout > 0, "timeout", "must be > 0")
        check(self.max_retries >= 0, "max_retries", "must be >= 0")


MAX_BATCH = 4096  # prompts per generate call
MAX_NEW_TOKENS = 8192  # tokens per candidate: a few dozen make a LaMP answer
MAX_CANDIDATES = 10_000  # per user, as many as a user may hold examples
MAX_REPLICAS = 1024  # cloud model copies on Ray
MAX_ROUNDS = 64  # cdcda_active's rounds


@dataclass
class CloudSettings:
    backend: Literal["embedded", "openai", "vllm"] = field(default="embedded", metadata={
        "help": "embedded = transformers in the server process (or its replicas); openai = "
                "any OpenAI-compatible endpoint; vllm = a vLLM engine in each replica, on "
                "a GPU (the vllm extra)"})
    model: str = field(default="gemma3-270m", metadata={"help": "embedded backend's model"})
    dtype: Literal["auto", "float32", "bfloat16"] = field(default="auto", metadata={
        "help": "auto = bfloat16 on a GPU or a CPU that computes it natively (AMX, "
                "AVX512-BF16), where it decodes 2.2x faster than float32; else float32"})
    accelerator: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "auto = CUDA when available"})
    batch_size: int = field(default=32, metadata={"help": "prompts per generate call"})
    batch_by: Literal["node", "user"] = field(default="node", metadata={
        "help": "embedded backend: node = a SuperNode's users share batches (up to "
                "batch_size rows, each user drawing from its own seed: fuller batches, "
                "2x the candidates/s at 4 users per node); user = each user's candidates "
                "are batched alone, so its data does not depend on its node's other users"})
    max_new_tokens: int = field(default=64, metadata={"help": "tokens per candidate"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature"})
    top_p: float = 0.95
    sampler: Literal["fast", "transformers"] = field(default="fast", metadata={
        "help": "embedded backend: 'fast' keeps transformers' top-p tokens without sorting "
                "the vocabulary and draws among them itself (server/sampling.py): the same "
                "distribution, another random stream; 'transformers' is generate's own "
                "sampling, kept to measure against"})
    threads: int = field(default=0, metadata={"help": "torch threads; 0 = leave (a replica: "
                                                      "one per reserved CPU)"})
    replicas: int = field(default=0, metadata={
        "help": "copies of the embedded model in Ray actors, placed by Ray across the "
                "cluster; each user's candidates go to one replica, so the synthetic data "
                "are the same with any number; 0 = the model runs in the server process"})
    num_cpus: float = field(default=1.0, metadata={
        "help": "CPUs Ray reserves for each replica, taken from the devices' share; "
                "0 = none reserved (it then shares the devices' cores)"})
    num_gpus: float = field(default=0.0, metadata={"help": "GPUs Ray reserves per replica"})
    openai: OpenAISettings = field(default_factory=OpenAISettings)

    def __post_init__(self) -> None:
        # sizes are checked before anything of that size is allocated
        check(1 <= self.batch_size <= MAX_BATCH, "batch_size", f"must be in [1, {MAX_BATCH}]")
        check(8 <= self.max_new_tokens <= MAX_NEW_TOKENS, "max_new_tokens",
              f"must be in [8, {MAX_NEW_TOKENS}], got {self.max_new_tokens}")
        check(self.temperature >= 0, "temperature", "must be >= 0")
        check(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        check(0 <= self.replicas <= MAX_REPLICAS, "replicas",
              f"must be in [0, {MAX_REPLICAS}], got {self.replicas}")
        check(self.num_cpus >= 0, "num_cpus", f"must be >= 0, got {self.num_cpus}")
        check(self.num_gpus >= 0, "num_gpus", f"must be >= 0, got {self.num_gpus}")
        if self.backend == "openai":
            check(bool(self.openai.model), "openai.model", "must name the served model")
            check(self.replicas == 0, "replicas", "applies to the embedded model: an "
                  "OpenAI-compatible endpoint scales itself (raise openai.concurrency)")
        if self.backend == "vllm":
            check(self.replicas >= 1, "replicas", "vllm runs in the cloud's Ray replicas: "
                  "set cloud.replicas >= 1 and cloud.num_gpus = 1")


@dataclass
class AugmentSettings:
    n: int = field(default=16, metadata={"help": "candidates the cloud writes per user"})
    near_duplicate: float = field(
        default=0.8, metadata={"help": "word Jaccard at or above which inputs are near copies"})
    consistency: bool = field(default=False, metadata={
        "help": "the cloud re-answers each kept candidate's input from the user's seeds "
                "(greedy) and the candidate is kept only if the answers agree: the same "
                "label or rating, or for generation tasks ROUGE-L >= consistency_rouge"})
    consistency_rouge: float = field(default=0.3, metadata={
        "help": "generation tasks: least ROUGE-L between the candidate's output and the "
                "cloud's re-answer for the candidate to be kept"})
    filters: bool = field(default=True, metadata={
        "help": "false keeps every candidate that parses with a valid label: no copy, "
                "duplicate, format or style checks (an ablation)"})
    two_step: bool = field(default=False, metadata={
        "help": "the cloud writes a candidate's input, then answers it greedily from the "
                "user's seeds (relabel prompt): the answer is the cloud's few-shot answer, "
                "not the one it wrote beside the input (tasks with an answer field: not "
                "citation or tweet, whose pairs are built on the device)"})
    style_filter: bool = field(default=False, metadata={
        "help": "generation tasks: drop candidates whose answer has a form (ending, colon, "
                "casing, shared opening word, length) that none of the user's seed answers "
                "shows (server/style.py)"})
    max_kept: int = field(default=0, metadata={"help": "synthetic examples per user; 0 = all"})
    pipeline: bool = field(default=True, metadata={
        "help": "a user's training starts as soon as its own synthetic data is ready, "
                "while the cloud writes the next users' (same data, same adapters: each "
                "user's augmentation is its own); false: every user's augmentation first"})
    rounds: int = field(default=2, metadata={
        "help": "cdcda_active: rounds of augmentation and training; augment.n and "
                "device.train.steps are split over them (cdcda's budget in all)"})
    fallback: Literal["none", "real_only"] = field(default="none", metadata={
        "help": "a user whose augmentation failed (cloud errors) after every retry: 'none' "
                "leaves them failed, to be retried on the next run; 'real_only' trains "
                "them on real data alone, marked `augment-fallback` in their result"})

    def __post_init__(self) -> None:
        check(0 <= self.n <= MAX_CANDIDATES, "n",
              f"must be in [0, {MAX_CANDIDATES}] candidates per user, got {self.n}")
        check(0 < self.near_duplicate <= 1, "near_duplicate", "must be in (0, 1]")
        check(self.max_kept >= 0, "max_kept", "must be >= 0")
        check(0 <= self.consistency_rouge <= 1, "consistency_rouge", "must be in [0, 1]")
        check(not (self.two_step and self.consistency), "consistency",
              "is redundant with two_step: a two-step answer is the cloud's re-answer")
        check(1 <= self.rounds <= MAX_ROUNDS, "rounds", f"must be in [1, {MAX_ROUNDS}], "
              f"got {self.rounds}")


@dataclass
class CloudFaults:
    fail: float = field(default=0.0, metadata={"help": "share of requests that fail"})
    slow: float = field(default=0.0, metadata={"help": "share delayed by `delay` seconds"})
    delay: float = field(default=1.0, metadata={"help": "seconds a slow request waits"})
    nonsense: float = field(default=0.0, metadata={"help": "share answered with nonsense"})
    outage: float = field(default=0.0, metadata={
        "help": "share of users for whom every request fails while the outage lasts"})
    outage_attempts: int = field(default=1, metadata={
        "help": "attempts the outage lasts (runtime.retries gives more); large = permanent"})

    def __post_init__(self) -> None:
        for name in ("fail", "slow", "nonsense", "outage"):
            v = getattr(self, name)
            check(0 <= v <= 1, name, f"must be a share in [0, 1], got {v}")
        check(self.fail + self.slow + self.nonsense <= 1, "fail",
              "fail + slow + nonsense must be <= 1")
        check(self.delay >= 0, "delay", "must be >= 0")
        check(self.outage_attempts >= 0, "outage_attempts", "must be >= 0")

    @property
    def active(self) -> bool:
        return self.fail + self.slow + self.nonsense + self.outage > 0

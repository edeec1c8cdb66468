"""Injected cloud faults (`[faults.cloud]`): failed, slow and nonsense requests, outages.

The wrapper sits between augmentation and any backend. Each decision is a pure function
of (seed, user, the user's request number, attempt), so runs are reproducible and a retry
draws again.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence

from server.backends import CloudError, CloudLLM, Completion, Seeds
from server.settings import CloudFaults


def _rng(*key: object) -> random.Random:
    digest = hashlib.sha256("/".join(map(str, key)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def nonsense(rng: random.Random) -> str:
    """What a broken model might say: junk words, control characters, stray colons."""
    alphabet = "abc xyz:\n\t\x00\x1b[]{}\u202e\u00e9\ud7ff0123456789"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))


class FaultyCloud:
    """A CloudLLM that fails, slows or garbles some requests of the users it is told."""

    def __init__(self, llm: CloudLLM, faults: CloudFaults, seed: int,
                 owners: Sequence[str], attempt: int):
        self.llm, self.faults, self.seed = llm, faults, seed
        self.owners, self.attempt = list(owners), attempt
        self.name = f"faulty:{llm.name}"

    def complete(self, prompts: Sequence[str], seed: Seeds, greedy: bool = False,
                 max_new_tokens: int | None = None, batch: Seeds | None = None
                 ) -> list[Completion]:
        f = self.faults
        out: list[Completion | None] = [None] * len(prompts)
        real: list[int] = []
        seen: dict[str, int] = {}
        for i, owner in enumerate(self.owners[: len(prompts)]):
            n = seen[owner] = seen.get(owner, -1) + 1
            if f.outage and self.attempt < f.outage_attempts and \
                    _rng(self.seed, "outage", owner).random() < f.outage:
                out[i] = CloudError("injected_outage")
                continue
            rng = _rng(self.seed, owner, n, self.attempt, greedy)
            u = rng.random()
            if u < f.fail:
                out[i] = CloudError("injected_failure")
            elif u < f.fail + f.slow:
                time.sleep(f.delay)
                real.append(i)
            elif u < f.fail + f.slow + f.nonsense:
                out[i] = nonsense(rng)
            else:
                real.append(i)
        if real:
            seeds = seed if isinstance(seed, int) else [seed[i] for i in real]
            keys = {} if batch is None else \
                {"batch": batch if isinstance(batch, int) else [batch[i] for i in real]}
            for i, text in zip(real, self.llm.complete([prompts[i] for i in real], seeds,
                                                       greedy, max_new_tokens, **keys)):
                out[i] = text
        return [o if o is not None else CloudError("missing") for o in out]

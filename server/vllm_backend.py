"""vLLM as the cloud's engine on a GPU (`cloud.backend = "vllm"`, the `vllm` extra).

It runs inside the cloud's Ray replicas (server/replicas.py), one engine per replica and
GPU, with continuous batching and prefix caching. Each request is seeded (its group's seed
plus its index in the group, as the OpenAI backend sends), so a user's completions do not
depend on what else is in flight; they are vLLM's draws, not the embedded backend's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from server.backends import STOP, Completion, Seeds, _cut, groups
from server.settings import CloudSettings

log = logging.getLogger(__name__)


class VLLMLLM:
    """The cloud model served by an in-process vLLM engine (needs CUDA)."""

    def __init__(self, settings: CloudSettings, should_stop: Callable[[], bool] = lambda: False):
        try:
            import vllm
        except ImportError:
            raise ValueError("cloud.backend = 'vllm' needs vLLM: pip install 'cdcda[vllm]' "
                             "(on a machine with a CUDA GPU)") from None
        import torch

        if not torch.cuda.is_available():
            raise ValueError("cloud.backend = 'vllm' needs a CUDA GPU where its replicas run: "
                             "set cloud.num_gpus = 1, or use cloud.backend = 'embedded'")
        from models.loading import resolve_model_dir

        self.vllm, self.settings, self.should_stop = vllm, settings, should_stop
        start = time.perf_counter()
        self.engine = vllm.LLM(model=resolve_model_dir(settings.model),
                               dtype="auto" if settings.dtype == "auto" else settings.dtype,
                               enable_prefix_caching=True, seed=0)
        self.load_seconds = time.perf_counter() - start
        self.context = int(self.engine.llm_engine.model_config.max_model_len)
        self.name = f"vllm:{settings.model}"
        self.generated_tokens = 0

    def complete(self, prompts: Sequence[str], seed: Seeds, greedy: bool = False,
                 max_new_tokens: int | None = None, batch: Seeds | None = None
                 ) -> list[Completion]:
        """Batch keys do not apply: each request carries its own seed, whatever else is
        in flight."""
        s = self.settings
        most = max_new_tokens or s.max_new_tokens
        request_seed = {i: group_seed + j for group_seed, members in groups(prompts, seed)
                        for j, i in enumerate(members)}
        params = [self.vllm.SamplingParams(
            temperature=0.0 if greedy else s.temperature, top_p=1.0 if greedy else s.top_p,
            seed=request_seed[i], max_tokens=most, stop=[STOP],
            truncate_prompt_tokens=max(self.context - most, 1))  # the prompt keeps its end
            for i in range(len(prompts))]
        outs = self.engine.generate(list(prompts), params, use_tqdm=False)
        self.generated_tokens += sum(len(o.outputs[0].token_ids) for o in outs)
        return [_cut(o.outputs[0].text) for o in outs]

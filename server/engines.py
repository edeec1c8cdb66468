"""The cloud's engine in this process: embedded transformers, an OpenAI-compatible endpoint,
or vLLM (server/cloud.py adds replicas of it on Ray)."""

from __future__ import annotations

from collections.abc import Callable

from server.backends import CloudLLM, EmbeddedLLM, OpenAILLM
from server.settings import CloudSettings


def make_backend(settings: CloudSettings, should_stop: Callable[[], bool] = lambda: False
                 ) -> CloudLLM:
    if settings.backend == "openai":
        return OpenAILLM(settings, should_stop)
    if settings.backend == "vllm":
        from server.vllm_backend import VLLMLLM  # an optional extra, imported when asked for

        return VLLMLLM(settings, should_stop)
    return EmbeddedLLM(settings, should_stop)

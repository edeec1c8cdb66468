"""The run's cloud LLM: in this process, or `cloud.replicas` copies on Ray."""

from __future__ import annotations

from collections.abc import Callable

from server.backends import CloudLLM
from server.engines import make_backend
from server.replicas import ReplicatedLLM
from server.settings import CloudSettings


def open_cloud(settings: CloudSettings, should_stop: Callable[[], bool] = lambda: False
               ) -> CloudLLM:
    if settings.replicas:
        return ReplicatedLLM(settings, should_stop)
    return make_backend(settings, should_stop)

"""cloud.backend = "vllm": what the engine is asked (per-request seeds, the blank-line
stop, greedy re-answers, prompts cut to the context), against a stand-in `vllm` module (no
GPU in CI); its errors without vLLM or a GPU, in process and through a Ray replica."""

from __future__ import annotations

import sys
import time
import types

import pytest
import torch

from server.settings import CloudSettings
from tasks.structured import ConfigError


class _Params:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _Engine:
    made: list[dict] = []

    def __init__(self, **kw):
        _Engine.made.append(kw)
        self.llm_engine = types.SimpleNamespace(
            model_config=types.SimpleNamespace(max_model_len=100))
        self.asked: list = []

    def generate(self, prompts, params, use_tqdm=True):
        assert use_tqdm is False and len(prompts) == len(params)
        self.asked.append(list(zip(prompts, params)))
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(
            text=f" {p}:{q.seed}\n\nmore", token_ids=[1, 2, 3])]) for p, q in zip(prompts, params)]


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm",
                        types.SimpleNamespace(LLM=_Engine, SamplingParams=_Params))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("models.loading.resolve_model_dir", lambda name: f"/models/{name}")


def _llm(**kw):
    from server.engines import make_backend

    return make_backend(CloudSettings(backend="vllm", replicas=1, model="m", **kw))


def test_each_request_is_seeded_stopped_at_a_blank_line_and_cut_to_the_context(stand_in):
    llm = _llm(max_new_tokens=30, temperature=0.7, top_p=0.9)
    assert _Engine.made[-1]["model"] == "/models/m" and _Engine.made[-1]["enable_prefix_caching"]
    out = llm.complete(["a", "b", "c", "d"], [5, 9, 5, 5])
    assert out == [" a:5", " b:9", " c:6", " d:7"]  # group seed + index in the group
    params = [q for _, q in llm.engine.asked[-1]]
    assert all(q.stop == ["\n\n"] and q.max_tokens == 30 and q.temperature == 0.7
               and q.top_p == 0.9 and q.truncate_prompt_tokens == 70 for q in params)
    assert llm.generated_tokens == 12
    llm.complete(["e"], 3, greedy=True, max_new_tokens=10)
    (_, q), = llm.engine.asked[-1]
    assert q.temperature == 0.0 and q.max_tokens == 10 and q.truncate_prompt_tokens == 90


def test_vllm_without_a_gpu_or_the_extra_says_what_to_do(stand_in, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="needs a CUDA GPU.*cloud.num_gpus"):
        _llm()
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm fails
    with pytest.raises(ValueError, match=r"pip install 'cdcda\[vllm\]'"):
        _llm()
    with pytest.raises(ConfigError, match="replicas"):
        CloudSettings(backend="vllm", replicas=0)


def test_a_replica_that_cannot_load_vllm_fails_the_run_with_its_reason():
    import ray

    from server.replicas import NAME, ReplicatedLLM

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        with pytest.raises(ValueError, match=r"could not load its model.*(cdcda\[vllm\]|CUDA GPU)"):
            ReplicatedLLM(CloudSettings(backend="vllm", replicas=1, num_cpus=1))
        for _ in range(100):  # the failed start left no replica behind (kills are async)
            try:
                ray.get_actor(NAME.format(0))
            except ValueError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the replica that could not load is still alive")
    finally:
        ray.shutdown()

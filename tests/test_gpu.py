"""CUDA paths (run with `pytest -m gpu` on a machine with a GPU; CI has none)."""

import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def need_cuda():
    if not torch.cuda.is_available():
        pytest.fail("-m gpu was asked for but this machine has no CUDA device")


def test_train_and_evaluate_one_user_on_cuda(tags_data, tmp_path):
    from clients import device
    from clients.settings import DeviceSettings, TrainSettings

    settings = DeviceSettings(model="tiny-random", prompt_style="plain", accelerator="cuda",
                              train=TrainSettings(epochs=2, batch_size=4))
    rt = device.runtime(settings)
    assert next(rt.model.parameters()).device.type == "cuda"
    m = device.train_user(rt, tags_data.task, tags_data.users["u0"], [], settings, "cdcda",
                          tmp_path, 0)
    assert m["last-loss"] < m["first-loss"] and m["peak-memory-mb"] > 0


def test_vllm_replica_writes_seeded_completions_on_cuda():
    """`pip install 'cdcda[vllm]'` first: the bundled cloud model served by vLLM in a
    replica; the same seeds give the same completions, whichever group they come with."""
    import ray

    from server.replicas import ReplicatedLLM
    from server.settings import CloudSettings

    ray.init(include_dashboard=False, logging_level="ERROR")
    try:
        llm = ReplicatedLLM(CloudSettings(backend="vllm", replicas=1, num_cpus=1, num_gpus=1,
                                          max_new_tokens=32))
        prompts = ["Headline: Rain falls on the city\n\nHeadline:", "Headline: A cat\n\nHeadline:"]
        alone = llm.complete(prompts[:1], [7])
        both = llm.complete(prompts, [7, 8])
        assert all(isinstance(t, str) for t in both) and any(t.strip() for t in both)
        assert both[0] == alone[0] and llm.generated_tokens > 0
    finally:
        ray.shutdown()

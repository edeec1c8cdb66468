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

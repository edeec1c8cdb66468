"""The cloud's replicas on Ray: the same completions as one model in this process, placed
beside the devices (not on top of them), restarted when one dies, refused when they do not
fit; and a cdcda run with a replica writes the same synthetic data and adapters."""

from __future__ import annotations

import json

import pytest
import torch

from server.backends import EmbeddedLLM
from server.settings import CloudSettings, OpenAISettings
from simulation.cli import main
from simulation.config import load_config
from tasks.structured import ConfigError

PROMPTS = ["Title: a dog\nTag:", "Title: the sea at night\nTag:", "Title: x\nTag:",
           "Title: robots in love\nTag:", "Title: a long winter\nTag:", "Title: q\nTag:"]
SEEDS = [11, 11, 7, 7, 7, 3]  # three users' groups


def _settings(**kw) -> CloudSettings:
    return CloudSettings(model="tiny-random-1", max_new_tokens=12, batch_size=2, threads=1,
                         **kw)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def in_process():
    threads = torch.get_num_threads()
    try:
        return EmbeddedLLM(_settings()).complete(PROMPTS, SEEDS)
    finally:
        torch.set_num_threads(threads)


def _replicated(ray, n: int):
    from server.replicas import NAME, ReplicatedLLM

    llm = ReplicatedLLM(_settings(replicas=n, num_cpus=1 / n))
    return llm, [ray.get_actor(NAME.format(i)) for i in range(n)]


def _kill_all(ray, handles) -> None:
    for h in handles:
        ray.kill(h, no_restart=True)


@pytest.mark.parametrize("n", [1, 2])
def test_replicas_write_what_one_model_in_process_writes(ray_local, in_process, n):
    llm, handles = _replicated(ray_local, n)
    try:
        got = llm.complete(PROMPTS, SEEDS)
    finally:
        _kill_all(ray_local, handles)
    assert all(isinstance(t, str) for t in in_process) and any(t.strip() for t in in_process)
    assert got == in_process
    assert llm.generated_tokens > 0


def test_a_dead_replica_is_restarted_and_its_work_done_again(ray_local, in_process):
    llm, handles = _replicated(ray_local, 1)
    try:
        assert llm.complete(PROMPTS[:2], SEEDS[:2]) == in_process[:2]  # one whole group
        ray_local.kill(handles[0], no_restart=False)  # its process dies; Ray starts another
        assert llm.complete(PROMPTS, SEEDS) == in_process
    finally:
        _kill_all(ray_local, handles)


def test_replicas_that_do_not_fit_are_refused_naming_the_options(ray_local):
    from server.replicas import placed, start

    settings = _settings(replicas=1, num_cpus=3)  # the local Ray has 2
    handles = start(settings)
    try:
        with pytest.raises(ValueError, match=r"cloud.replicas = 1.*cloud.num_cpus = 3"):
            placed(handles, settings, timeout=2)
    finally:
        _kill_all(ray_local, handles)


def test_device_workers_fit_beside_what_the_replicas_reserve(ray_local):
    from simulation.running.actors import capacity

    node = ray_local.get_runtime_context().get_node_id()
    assert capacity({"num_cpus": 1.0}, {}) == 2
    assert capacity({"num_cpus": 1.0}, {node: {"CPU": 1.0, "GPU": 0.0}}) == 1
    assert capacity({"num_cpus": 0.5}, {node: {"CPU": 1.0, "GPU": 0.0}}) == 2
    assert capacity({"num_cpus": 1.0}, {node: {"CPU": 2.0, "GPU": 0.0}}) == 0


def test_replica_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="replicas"):
        CloudSettings(replicas=-1)
    with pytest.raises(ConfigError, match="num_cpus"):
        CloudSettings(num_cpus=-1)
    with pytest.raises(ConfigError, match="replicas.*endpoint"):
        CloudSettings(backend="openai", replicas=2, openai=OpenAISettings(model="m"))
    from simulation.running.guards import check_local_resources

    cfg = load_config("configs/tiny.toml", ["cloud.replicas=2", "cloud.num_cpus=1",
                                            "runtime.num_cpus=2"])
    with pytest.raises(ValueError, match=r"cloud.replicas = 2 x cloud.num_cpus = 1"):
        check_local_resources(cfg)
    # replicas are started only for a method that uses the cloud
    check_local_resources(load_config("configs/tiny.toml", [
        "cloud.replicas=2", "cloud.num_cpus=1", "runtime.num_cpus=2",
        "experiment.methods=['local_real']"]))


def _run(out, replicas: int, cohort: int = 1) -> dict:
    assert main(["run", "--config", "configs/tiny.toml", "--out", str(out),
                 "--set", "experiment.methods=['cdcda', 'cloud']", "--set", "augment.n=3",
                 "--set", f"runtime.cohort={cohort}",
                 "--set", "cloud.threads=1", "--set", f"cloud.replicas={replicas}",
                 "--set", f"cloud.num_cpus={1 / max(replicas, 1)}",
                 "--set", "runtime.num_cpus=2"]) == 0
    return json.loads((out / "summary.json").read_text())


RESULTS = ("accuracy", "f1", "first-loss", "last-loss", "num-synthetic", "num-examples")


def _untimed(per_user: dict) -> dict:
    """What a user's result says, without its measured times and memory."""
    return {u: {k: m.get(k) for k in RESULTS} for u, m in per_user.items()}


@pytest.mark.e2e
# n = 1 is marked slow for CI's time: n = 2 runs the same path with two pipeline threads,
# and test_replicas_write_what_one_model_in_process_writes checks one replica's output
@pytest.mark.parametrize("n", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_cdcda_with_replicas_gives_the_same_data_adapters_and_metrics(tmp_path, n):
    """n = 2: two pipeline threads augment two nodes of two users at once, on two
    replicas, each node's users in shared batches (cloud.batch_by = "node")."""
    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"  # same length: same message bytes
    here, there = _run(a, 0, n), _run(b, n, n)
    users = sorted(p.name for p in (a / "adapters").iterdir())
    assert len(users) == 4
    for user in users:
        assert (a / "synthetic" / f"{user}.json").read_bytes() == \
            (b / "synthetic" / f"{user}.json").read_bytes(), user
        assert (a / "adapters" / user / "adapter_model.safetensors").read_bytes() == \
            (b / "adapters" / user / "adapter_model.safetensors").read_bytes(), user
    for method in ("cdcda", "cloud"):
        x, y = (_untimed(r["methods"][method]["per_user"]) for r in (here, there))
        assert x == y and len(x) == 4, method
    preds = sorted((a / "predictions" / "cloud").iterdir())
    assert len(preds) == 4
    for pred in preds:  # the same answers; only the Ray node id they ran on differs
        x, y = (json.loads(f.read_text()) for f in (pred, b / "predictions" / "cloud" / pred.name))
        x.pop("node"), y.pop("node")
        assert x == y, pred.name
    log = (b / "run.log").read_text()
    assert f"{n} cloud replica(s) placed" in log and "1 device worker(s) fit beside" in log

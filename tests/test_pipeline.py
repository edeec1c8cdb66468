"""cdcda's pipeline: users train as their own synthetic data comes, while the cloud writes
the next users'. Same synthetic data, same adapters, same metrics as without it."""

from __future__ import annotations

import json

import pytest

from simulation.cli import main

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cloud(stand_in_cloud):
    return stand_in_cloud.url


def _run(out, cloud: str, pipeline: bool, cohort: int) -> dict:
    assert main(["run", "--config", "configs/tiny.toml", "--out", str(out),
                 "--set", "experiment.methods=['cdcda']", "--set", "augment.n=4",
                 "--set", "experiment.users=6", "--set", f"runtime.cohort={cohort}",
                 "--set", f"augment.pipeline={str(pipeline).lower()}",
                 "--set", "cloud.backend=openai", "--set", f"cloud.openai.base_url={cloud}",
                 "--set", "cloud.openai.model=stand-in",
                 "--set", "cloud.openai.concurrency=2"]) == 0
    return json.loads((out / "summary.json").read_text())


# cohort 1 (one user per node) is marked slow for CI's time: cohort 2 covers the same
# pipeline with node batches, which is what the default run uses
@pytest.mark.parametrize("cohort", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_pipelined_cdcda_gives_the_same_data_adapters_and_metrics(tmp_path, cloud, cohort):
    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"  # same length: same message bytes
    plain, piped = _run(a, cloud, False, cohort), _run(b, cloud, True, cohort)
    users = sorted(p.name for p in (a / "adapters").iterdir())
    assert len(users) == 6
    kept = 0
    for user in users:
        data = (a / "synthetic" / f"{user}.json").read_bytes()
        assert data == (b / "synthetic" / f"{user}.json").read_bytes(), user
        kept += len(json.loads(data)["items"])
        assert (a / "adapters" / user / "adapter_model.safetensors").read_bytes() == \
            (b / "adapters" / user / "adapter_model.safetensors").read_bytes(), user
    assert kept > 6  # real synthetic data, not empty lists
    x, y = plain["methods"]["cdcda"]["per_user"], piped["methods"]["cdcda"]["per_user"]
    assert x.keys() == y.keys()
    for user in x:
        for key in ("accuracy", "f1", "first-loss", "last-loss", "num-synthetic"):
            assert x[user][key] == y[user][key], (user, key)
    figures = json.loads((b / "pipeline.json").read_text())["cdcda"]
    assert figures["cloud_seconds"] > 0 and figures["devices_seconds"] > 0
    assert 0 <= figures["both_seconds"] <= min(figures["cloud_seconds"],
                                                figures["devices_seconds"]) + 1e-6
    assert 0 <= figures["overlap_share"] <= 1
    assert not (a / "pipeline.json").exists()  # nothing to overlap without the pipeline
    # the summary and the report carry them (the summary is rebuilt from the run directory)
    assert piped["scale"]["pipeline"] == {"cdcda": figures}
    assert "pipeline" not in plain["scale"]
    report = (b / "report.md").read_text()
    assert f"Pipeline, cdcda: the cloud worked {figures['cloud_seconds']:.1f} s" in report
    assert "Pipeline," not in (a / "report.md").read_text()


def test_pipelined_cdcda_on_the_embedded_cloud_batching_nodes_gives_the_same_data(tmp_path):
    """cloud.batch_by = "node" (the default): a node's users share the cloud's batches,
    with or without the pipeline, so their data and adapters are the same."""
    def run(out, pipeline: bool) -> None:
        assert main(["run", "--config", "configs/tiny.toml", "--out", str(out),
                     "--set", "experiment.methods=['cdcda']", "--set", "augment.n=4",
                     "--set", "runtime.cohort=2",
                     "--set", f"augment.pipeline={str(pipeline).lower()}"]) == 0

    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    run(a, False)
    run(b, True)
    users = sorted(p.name for p in (a / "adapters").iterdir())
    assert len(users) == 4
    for user in users:
        assert (a / "synthetic" / f"{user}.json").read_bytes() == \
            (b / "synthetic" / f"{user}.json").read_bytes(), user
        assert (a / "adapters" / user / "adapter_model.safetensors").read_bytes() == \
            (b / "adapters" / user / "adapter_model.safetensors").read_bytes(), user

"""`cdcda bench cloud`: throughput at several batch sizes and the bound shares."""

import json
import math

from simulation.cli import main


def test_bench_cloud_reports_batch_sizes_and_where_the_time_goes(capsys):
    assert main(["bench", "cloud", "--config", "configs/tiny.toml", "--users", "2",
                 "--batch-sizes", "1,2"]) == 0
    out = json.loads(capsys.readouterr().out)  # stdout is the JSON and nothing else
    assert set(out["by_batch_size"]) == {"1", "2"}
    assert out["allocator"] in ("glibc, freed memory kept", "system default")
    for run in out["by_batch_size"].values():
        assert run["counts"]["generated"] == 4 and run["candidates_per_second"] > 0
    b = out["bounds"]
    for key in ("prefill_share_of_matmul_ceiling", "decode_share_of_bandwidth_bound",
                "prefill_tokens_per_second", "decode_tokens_per_second",
                "matmul_ceiling_tflops", "copy_bandwidth_gb_per_second"):
        assert math.isfinite(b[key]) and b[key] > 0, key
    assert 0 < b["decode_share_of_bandwidth_bound"] <= 1.5  # a bound, up to timing noise
    assert set(b["sampling_seconds_per_step"]) == {"transformers", "fast"}
    assert "non-embedding parameters" in b["formula"]


def test_bench_cloud_times_augmentation_variants_against_the_configured_one(capsys):
    assert main(["bench", "cloud", "--config", "configs/tiny.toml", "--users", "2",
                 "--no-bounds", "--vs", "augment.consistency=true", "--vs", "augment.n=1",
                 "--repeats", "1"]) == 0
    vs = json.loads(capsys.readouterr().out)["vs"]
    assert set(vs) == {"configured", "augment.consistency=true", "augment.n=1"}
    assert vs["configured"]["ratio_to_configured"] == 1.0
    assert vs["augment.n=1"]["generated"] == 2  # 2 users x 1 candidate
    assert all(v["augment_seconds"] > 0 for v in vs.values())


def test_bench_cloud_times_another_cloud_arithmetic_in_the_same_run(capsys):
    old = "cloud.sampler=transformers cloud.batch_by=user cloud.dtype=float32"
    assert main(["bench", "cloud", "--config", "configs/tiny.toml", "--users", "4",
                 "--set", "runtime.cohort=2", "--no-bounds", "--vs", old,
                 "--repeats", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch_by"] == "node" and out["cohort"] == 2
    assert set(out["vs"]) == {"configured", old}
    assert out["vs"][old]["generated"] == out["vs"]["configured"]["generated"] == 8
    assert out["vs"][old]["candidates_per_second"] > 0


def test_bench_cloud_refuses_a_variant_outside_augment_and_cloud(capsys):
    assert main(["bench", "cloud", "--config", "configs/tiny.toml", "--users", "1",
                 "--no-bounds", "--vs", "device.train.lr=1"]) != 0
    err = capsys.readouterr()
    assert "--vs 'device.train.lr=1': must be augment.KEY=VALUE or cloud.KEY=VALUE" in err.err
    assert not err.out
    assert main(["bench", "cloud", "--config", "configs/tiny.toml", "--users", "1",
                 "--no-bounds", "--vs", "cloud.batch_by=users"]) != 0
    err = capsys.readouterr().err
    assert "--vs 'cloud.batch_by=users'" in err and "batch_by" in err

"""`cdcda bench train`: one-by-one peft vs the cohort trainer at K = 1 and K, as JSON."""

from __future__ import annotations

import json
import math

import pytest

from simulation.bench.train import useful_flops
from simulation.cli import main


def test_bench_train_compares_three_paths_on_the_same_users(capsys):
    assert main(["bench", "train", "--config", "configs/tiny.toml", "--users", "3",
                 "--cohort", "3", "--repeat", "2"]) == 0
    printed = capsys.readouterr()
    out = json.loads(printed.out)  # stdout is the JSON and nothing else
    assert printed.err.count("bench train: (") == 6  # progress: 3 paths x 2 repeats
    assert out["users"] == 3 and out["cohort"] == 3
    for path in ("a_one_by_one_peft", "b_cohort_k1", "c_cohort_k3"):
        p = out[path]
        assert p["seconds"] > 0 and p["users_per_minute"] > 0
        assert math.isclose(p["train_tokens_per_second"] * p["seconds"], out["train_tokens"],
                            rel_tol=0.02)
        assert 0 < p["mfu"] < 1
    a, c = out["a_one_by_one_peft"], out["c_cohort_k3"]
    assert len(a["all_seconds"]) == 2 and a["seconds"] == min(a["all_seconds"])
    assert out["ratio_c_over_a"] == pytest.approx(a["seconds"] / c["seconds"], rel=0.1)
    assert out["ceiling_tflops_matmul"] > 0 and "frozen base" in out["flops_formula"]
    assert out["ceiling_dtype"] == "float32" and out["recipe"]["bf16"] is False
    # tiny.toml trains in fp32: the cohort's adapters are the one-by-one run's
    assert out["max_adapter_difference_a_vs_c"] < 1e-3
    assert 0 <= out["max_relative_adapter_difference_a_vs_c"] < 1e-3


def test_useful_flops_formula():
    shape = {"body": 100, "lora": 10, "layers": 2, "attn_dim": 8, "vocab": 50, "hidden": 4}
    # 4*100 + 6*10 + 4*2*16*8 per token, 4*50*4 per answer token
    assert useful_flops(shape, tokens=10, answer_tokens=3, mean_len=16) == \
        10 * (400 + 60 + 1024) + 3 * 800

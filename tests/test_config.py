"""The experiment config: TOML + overrides, and errors that name the field and file."""

import pytest

from simulation.config import DEFAULT_CONFIG, dump_config, load_config
from tasks.structured import ConfigError


def test_default_config_is_the_offline_embedded_default():
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.device.model == "smollm2-135m-instruct"
    assert cfg.cloud.backend == "embedded" and cfg.cloud.model == "gemma3-270m"
    assert cfg.data.source == "benchmark" and cfg.runtime.wandb == "offline"
    assert {"zero_shot", "local_real", "cdcda"} <= set(cfg.experiment.methods)


def test_overrides_are_typed_and_nested():
    cfg = load_config(DEFAULT_CONFIG, ["device.lora.rank=4", "device.train.bf16=false",
                                       "experiment.methods=['cdcda']", "cloud.temperature=0.5"])
    assert cfg.device.lora.rank == 4 and cfg.device.train.bf16 is False
    assert cfg.experiment.methods == ["cdcda"] and cfg.cloud.temperature == 0.5


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(DEFAULT_CONFIG, ["augment.n=3"])
    dump_config(cfg, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == cfg


@pytest.mark.parametrize("override, message", [
    ("device.lora.rank=0", "device.lora.rank must be >= 1, got 0"),
    ("device.lora.rnak=2", "unknown option device.lora.rnak; known options of [device.lora]"),
    ("cloud.backend=grpc", "cloud.backend = 'grpc' is not one of 'embedded', 'openai'"),
    ("experiment.methods=['fedsgd']", "experiment.methods has 'fedsgd'"),
    ("device.train.epochs=1.5", "device.train.epochs must be an integer"),
    ("cloud.backend=openai", "cloud.openai.model must name the served model"),
    ("data.source=lamp", "data.dir must name a folder"),
    ("nonsense", "--set 'nonsense' must look like section.key=value"),
])
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(DEFAULT_CONFIG, [override])
    assert message in str(err.value)
    if "--set" not in message:
        assert str(DEFAULT_CONFIG) in str(err.value)


def test_bad_toml_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment\nusers = 3")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)


def test_cloud_api_key_is_not_handed_to_ray_workers(monkeypatch, tmp_path):
    from simulation.runner import _environment

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("MY_KEY", "sk-secret")
    cfg = load_config(DEFAULT_CONFIG, ["cloud.openai.api_key_env=MY_KEY"])
    assert "sk-secret" not in _environment(tmp_path, cfg).values()


def test_resuming_with_another_config_is_refused(tmp_path, capsys):
    from simulation.cli import main

    dump_config(load_config("configs/tiny.toml"), tmp_path / "config.toml")
    code = main(["run", "--config", "configs/tiny.toml", "--out", str(tmp_path),
                 "--set", "device.lora.rank=16"])
    assert code == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "device.lora.rank: 8 -> 16" in err and "use a new --out" in err

"""The experiment config: TOML + overrides, and errors that name the field and file."""

import json
import os

import pytest

from simulation.config import CONFIGS, DEFAULT_CONFIG, dump_config, load_config
from tasks.structured import ConfigError, to_mapping


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


def test_bf16_auto_follows_native_support_and_explicit_values_win(monkeypatch):
    import torch

    from models.loading import native_bf16

    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.device.train.bf16 == "auto"
    for native in (True, False):  # an AVX2-only CPU emulates bf16: float32 there
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda n=native: n)
        assert native_bf16("cpu") is native and cfg.device.train.uses_bf16("cpu") is native
        for text, want in (("true", True), ("False", False)):
            forced = load_config(DEFAULT_CONFIG, [f"device.train.bf16={text}"]).device.train
            assert forced.uses_bf16("cpu") is want
    with pytest.raises(ConfigError, match="bf16"):
        load_config(DEFAULT_CONFIG, ["device.train.bf16=sometimes"])


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
    ("data.noise=5", "data.noise must be in [0, 1), got 5"),
    ("runtime.retries=-1", "runtime.retries must be >= 0"),
    ("runtime.cohort=0", "runtime.cohort must be >= 1"),
    ("faults.device.crash=1.5", "faults.device.crash must be a share in [0, 1]"),
    ("augment.fallback=maybe", "augment.fallback"),
])
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(DEFAULT_CONFIG, [override])
    assert message in str(err.value)
    # the value came from --set, so the error blames --set, not the (valid) config file
    assert str(err.value).startswith("--set") and str(DEFAULT_CONFIG) not in str(err.value)


def test_a_bad_value_in_the_file_names_the_file(tmp_path):
    bad = tmp_path / "exp.toml"
    bad.write_text("[device.lora]\nrank = 0\n")
    with pytest.raises(ConfigError, match="exp.toml: device.lora.rank must be >= 1"):
        load_config(bad, ["device.lora.alpha=8"])


def test_bad_toml_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment\nusers = 3")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)


def test_cloud_api_key_is_not_handed_to_ray_workers(monkeypatch, tmp_path):
    from simulation.running.runner import _environment

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


def _no_simulation(monkeypatch):
    """Stop `cdcda run` right where Ray would start: these tests are about start-up."""
    import simulation.running.runner

    started = []
    monkeypatch.setattr(simulation.running.runner, "_simulate", lambda *a, **k: started.append(1))
    return started


def test_a_start_up_failure_leaves_no_config_behind(tmp_path, capsys, monkeypatch):
    from simulation.cli import main

    started = _no_simulation(monkeypatch)
    out = tmp_path / "run"
    data = tmp_path / "lamp"
    data.mkdir()  # no LaMP files: data preparation fails after the config was parsed
    assert main(["run", "--config", "configs/tiny.toml", "--out", str(out), "--set",
                 "data.source=lamp", "--set", f"data.dir={data}", "--set",
                 "data.task=LaMP-2"]) == 2
    assert "dev_questions.json" in capsys.readouterr().err
    assert not (out / "config.toml").exists()
    # the corrected command is not refused as "another config"
    main(["run", "--config", "configs/tiny.toml", "--out", str(out)])
    assert "another config" not in capsys.readouterr().err
    assert started and (out / "config.toml").exists()


@pytest.mark.parametrize("option, value, named", [
    ("device.model", "/no/such/model", "device.model = '/no/such/model'"),
    ("cloud.model", "no-such-model", "cloud.model = 'no-such-model'"),
])
def test_a_model_error_says_whose_model_it_is(tmp_path, capsys, monkeypatch, option, value,
                                              named):
    from simulation.cli import main

    _no_simulation(monkeypatch)
    code = main(["run", "--config", "configs/tiny.toml", "--out", str(tmp_path / "run"),
                 "--set", f"{option}={value}"])
    assert code == 2
    assert named in capsys.readouterr().err.replace("\n", "")
    assert not (tmp_path / "run" / "config.toml").exists()


def test_out_under_a_regular_file_is_a_clear_error(tmp_path, capsys):
    from simulation.cli import main

    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "run"):
        assert main(["run", "--config", "configs/tiny.toml", "--out", str(out)]) == 2
        err = capsys.readouterr().err.replace("\n", "")
        assert f"--out {out}" in err and "Traceback" not in err


def test_summary_rebuilds_from_the_run_directory_and_fails_on_an_empty_one(tmp_path, capsys):
    from simulation.cli import main

    assert main(["summary", str(tmp_path)]) == 2  # no run here
    assert "no config.toml" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")) + [None])
def test_a_config_reloads_from_its_dump_to_the_same_values_and_types(name, tmp_path):
    """`cdcda summary DIR` rebuilds summary.json from DIR/config.toml: the reloaded config
    must serialise exactly as the one the run started with (0 must not come back 0.0)."""
    cfg = load_config(CONFIGS / name if name else None)
    dump_config(cfg, tmp_path / "config.toml")
    again = load_config(tmp_path / "config.toml")
    assert json.dumps(to_mapping(again)) == json.dumps(to_mapping(cfg))


@pytest.mark.parametrize("override, field", [
    ("device.train.lr=inf", "lr"), ("device.train.lr=nan", "lr"),
    ("experiment.methods=[]", "methods"), ("experiment.methods=['cdcda','cdcda']", "methods"),
    ("data.queries=10000000", "queries"), ("data.profile_size=20000", "profile_size"),
    ("runtime.num_cpus=-1", "num_cpus"), ("runtime.client_gpus=-0.5", "client_gpus"),
    # generation and training sizes, checked before anything that size is allocated
    ("cloud.max_new_tokens=100000000", "max_new_tokens"), ("augment.n=1000000", "n"),
    ("cloud.batch_size=10000000", "batch_size"),
    ("device.train.max_length=10000000", "max_length"),
    ("device.train.batch_size=10000000", "batch_size"),
])
def test_silent_nonsense_is_refused_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=field):
        load_config(DEFAULT_CONFIG, [override])


@pytest.mark.parametrize("override, says", [
    ("runtime.client_cpus=4096", "runtime.client_cpus = 4096 but the local Ray has"),
    ("runtime.client_gpus=1", "runtime.client_gpus = 1 but this machine has no CUDA GPU"),
])
def test_device_resources_the_machine_cannot_give_fail_before_ray(override, says, tmp_path,
                                                                   capsys):
    import torch

    from simulation.cli import main

    if "gpus" in override and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "run"
    assert main(["run", "--config", "configs/tiny.toml", "--out", str(out), "--set",
                 override]) == 2
    assert says in capsys.readouterr().err
    assert not (out / "config.toml").exists()  # nothing claimed the folder


def test_a_second_run_on_the_same_out_is_refused_while_the_first_holds_it(tmp_path, capsys):
    import os
    import socket

    from simulation.cli import main
    from simulation.running.guards import only_run

    out = tmp_path / "run"
    out.mkdir()
    with only_run(out):  # the first run, still going
        assert main(["run", "--config", "configs/tiny.toml", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"{out} is in use by another cdcda run" in err
        assert f"pid {os.getpid()} on {socket.gethostname()}" in err
        assert main(["sweep", "--config", "configs/tiny.toml", "--grid", "data.queries=1,2",
                     "--out", str(out)]) == 2
        assert "is in use by another cdcda sweep" in capsys.readouterr().err
    assert not (out / "config.toml").exists() and not (out / "points").exists()


def test_sigterm_while_ray_starts_is_a_stop_said_so_not_a_silent_exit_15(tmp_path, capsys,
                                                                         monkeypatch):
    import ray

    from simulation.cli import main

    def init(**kwargs):  # what ray.init's own SIGTERM handler does mid-start
        raise SystemExit(15)

    monkeypatch.setattr(ray, "init", init)
    out = tmp_path / "run"
    assert main(["run", "--config", "configs/tiny.toml", "--out", str(out)]) == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM" in err and "resume with: cdcda run --out" in err
    assert (out / "summary.json").is_file()  # rebuilt from what is stored, as on any stop


def test_ctrl_c_outside_a_run_exits_130_without_a_traceback(tmp_path, capsys, monkeypatch):
    from simulation import commands
    from simulation.cli import main

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "report", interrupted)
    assert main(["report", str(tmp_path)]) == 130
    assert "stopped by SIGINT" in capsys.readouterr().err


@pytest.fixture
def full_disk(tmp_path):
    """A 64 kB filesystem (tmpfs), to fill; skipped where this machine may not mount."""
    import subprocess

    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode()[:100]}")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def test_a_full_disk_names_the_file_and_is_not_called_bad_input(full_disk, capsys):
    from simulation.cli import main

    out = full_disk / "bench"
    assert main(["data", "make", "--task", "tweet", "--users", "500", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(out) in err and "free space" in err
    assert "Logging error" not in err


def test_run_log_that_cannot_be_written_says_so_once(tmp_path, capsys):
    import logging

    from clients.worker_log import RunLogHandler

    handler = RunLogHandler(tmp_path / "run.log")
    handler.stream.close()  # every write fails from here on, as on a full disk
    log = logging.getLogger("test_run_log_quiet")
    log.addHandler(handler)
    try:
        for _ in range(5):
            log.warning("a line")
    finally:
        log.removeHandler(handler)
    err = capsys.readouterr().err
    assert err.count("cannot be written") == 1 and "Logging error" not in err


def test_a_killed_runs_lock_is_taken_over(tmp_path):
    import signal
    import subprocess
    import sys

    from simulation.running.guards import only_run

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; "
        "from simulation.running.guards import only_run\n"
        "with only_run(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(60)"),
        str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(ValueError, match="in use by another cdcda run"):
        with only_run(tmp_path):
            pass
    holder.send_signal(signal.SIGKILL)  # killed: its lock and owner line are stale
    holder.wait()
    with only_run(tmp_path):
        assert (tmp_path / ".run.lock.owner").read_text().startswith("pid ")


def test_a_killed_sessions_start_markers_are_cleared(tmp_path):
    from simulation.running.guards import clear_stale_markers
    from tasks.files import INFLIGHT_DIR, give_up, mark_started

    for mid in ("a1", "b2", "c3"):
        mark_started(tmp_path, mid)
    give_up(tmp_path, "d4")
    assert not mark_started(tmp_path, "d4")  # a device skips a message given up on
    assert clear_stale_markers(tmp_path) == 4  # three markers and the given-up folder
    assert list((tmp_path / INFLIGHT_DIR).iterdir()) == []
    assert clear_stale_markers(tmp_path / "nothing-here") == 0


def test_no_secret_reaches_a_device_workers_environment(monkeypatch, tmp_path):
    import ray

    from simulation.running.runner import _environment, _start_ray

    cfg = load_config(CONFIGS / "tiny.toml")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-devices")
    monkeypatch.setenv("OTHER_SERVICE_API_KEY", "k2")
    monkeypatch.setenv("DB_PASSWORD", "p3")
    _start_ray(ray, cfg, None, _environment(tmp_path, cfg), False, tmp_path)
    try:
        @ray.remote
        def seen() -> dict:
            import os

            return {k: v for k, v in os.environ.items() if v in ("sk-not-for-devices", "k2",
                                                                  "p3")}

        assert ray.get(seen.remote()) == {}
    finally:
        ray.shutdown()
    assert os.environ["OPENAI_API_KEY"] == "sk-not-for-devices"  # the driver keeps it

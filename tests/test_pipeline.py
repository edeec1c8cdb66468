"""cdcda's pipeline: users train as their own synthetic data comes, while the cloud writes
the next users'. Same synthetic data, same adapters, same metrics as without it."""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from simulation.cli import main

pytestmark = pytest.mark.e2e
WORDS = ("space", "love", "crime", "robot", "river", "ghost", "queen", "storm", "music",
         "train", "winter", "island", "secret", "dragon", "city", "letter")


@pytest.fixture(scope="module")
def cloud():
    """An OpenAI-compatible stand-in whose candidates parse, differ by request seed and take
    a little time (the tiny random model's never parse: nothing would be kept)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(0.1)
            rng = random.Random(body.get("seed", 0))
            text = " A film about " + " ".join(rng.sample(WORDS, 7)) + \
                f".\ntag: {rng.choice(['comedy', 'drama', 'sci-fi'])}"
            data = json.dumps({"id": "x", "object": "text_completion", "created": 0,
                               "model": body["model"], "choices": [
                                   {"index": 0, "finish_reason": "stop", "logprobs": None,
                                    "text": text}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _run(out, cloud: str, pipeline: bool, cohort: int) -> dict:
    assert main(["run", "--config", "configs/tiny.toml", "--out", str(out),
                 "--set", "experiment.methods=['cdcda']", "--set", "augment.n=4",
                 "--set", "experiment.users=6", "--set", f"runtime.cohort={cohort}",
                 "--set", f"augment.pipeline={str(pipeline).lower()}",
                 "--set", "cloud.backend=openai", "--set", f"cloud.openai.base_url={cloud}",
                 "--set", "cloud.openai.model=stand-in",
                 "--set", "cloud.openai.concurrency=2"]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("cohort", [1, 2])
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

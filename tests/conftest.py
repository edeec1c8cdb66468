"""Shared fixtures: tiny models, a small benchmark, offline settings for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tags_data(tmp_path_factory):
    from tasks import load_lamp_dir
    from tasks.benchmark import make_benchmark

    out = tmp_path_factory.mktemp("tags")
    make_benchmark("tags", 4, 0, out, profile_size=6, queries=2)
    return load_lamp_dir(out)


@pytest.fixture(scope="session")
def tiny_device():
    from clients.device import runtime
    from clients.settings import DeviceSettings, LoraSettings, TrainSettings

    # all-linear: a random 2-layer model barely moves with q/v adapters alone
    settings = DeviceSettings(model="tiny-random", prompt_style="plain",
                              lora=LoraSettings(target_modules=["all-linear"]),
                              train=TrainSettings(epochs=2, batch_size=4, bf16=False))
    return settings, runtime(settings)


WORDS = ("space", "love", "crime", "robot", "river", "ghost", "queen", "storm", "music",
         "train", "winter", "island", "secret", "dragon", "city", "letter")


@pytest.fixture(scope="module")
def stand_in_cloud():
    """An OpenAI-compatible stand-in whose candidates parse, differ by request seed and take
    a little time (the tiny random model's never parse: nothing would be kept). `.url` is
    its base URL; `.prompts` every prompt it was sent."""
    import json
    import random
    import threading
    import time
    import types
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    prompts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompts.append(body.get("prompt", ""))
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
    yield types.SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}/v1",
                                prompts=prompts)
    server.shutdown()

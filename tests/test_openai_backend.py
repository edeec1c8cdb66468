"""The OpenAI-compatible backend against a local HTTP stand-in on 127.0.0.1."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from server.backends import CloudError, OpenAILLM
from server.settings import CloudSettings, OpenAISettings

SECRET = "sk-test-secret-123"


class Endpoint:
    def __init__(self, fail_first: int = 0, delay: float = 0.0):
        self.requests = []
        self.fail_first = fail_first
        self.delay = delay
        parent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                parent.requests.append((self.path, self.headers.get("Authorization"), body))
                time.sleep(parent.delay)
                if parent.fail_first > 0:
                    parent.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.path.endswith("/chat/completions"):
                    choice = {"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": " A chat example.\ntag: comedy\n\nmore"}}
                    obj = "chat.completion"
                else:
                    choice = {"index": 0, "finish_reason": "stop", "logprobs": None,
                              "text": " " + body["prompt"][-5:] + "\ntag: comedy"}
                    obj = "text_completion"
                data = json.dumps({"id": "x", "object": obj, "created": 0, "model": body["model"],
                                   "choices": [choice]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def endpoint():
    ep = Endpoint()
    yield ep
    ep.close()


def _settings(url, api="completions", retries=2):
    return CloudSettings(backend="openai", max_new_tokens=16, openai=OpenAISettings(
        base_url=url, model="stand-in", api=api, concurrency=4, timeout=5,
        max_retries=retries, api_key_env="CDCDA_TEST_KEY"))


def test_completions_keep_order_and_send_the_key(endpoint, monkeypatch, caplog):
    monkeypatch.setenv("CDCDA_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    llm = OpenAILLM(_settings(endpoint.url))
    prompts = [f"prompt {i:05d}" for i in range(10)]
    out = llm.complete(prompts, seed=0)
    assert out == [f" {p[-5:]}\ntag: comedy" for p in prompts]  # order kept under concurrency
    assert all(auth == f"Bearer {SECRET}" for _, auth, _ in endpoint.requests)
    assert {body["stop"][0] for _, _, body in endpoint.requests} == {"\n\n"}
    assert SECRET not in caplog.text


def test_chat_api_is_cut_at_the_blank_line(endpoint):
    llm = OpenAILLM(_settings(endpoint.url, api="chat"))
    assert llm.complete(["x"], seed=0) == [" A chat example.\ntag: comedy"]
    assert endpoint.requests[0][0] == "/v1/chat/completions"


def test_retries_with_backoff_then_succeeds():
    ep = Endpoint(fail_first=2)
    try:
        llm = OpenAILLM(_settings(ep.url, retries=2))
        assert llm.complete(["hello"], seed=0)[0].endswith("tag: comedy")
        assert len(ep.requests) == 3 and llm.failures == 0
    finally:
        ep.close()


def test_endpoint_down_is_counted_not_fatal():
    ep = Endpoint(fail_first=100)
    try:
        llm = OpenAILLM(_settings(ep.url, retries=0))
        assert llm.complete(["a", "b"], seed=0) == [CloudError("http_503")] * 2
        assert llm.failures == 2
    finally:
        ep.close()


def test_a_stop_ends_the_wait_on_a_slow_endpoint_at_once():
    """SIGINT while 20 s requests are out: the backend returns within a poll, each
    unanswered prompt a CloudError("stopped"), instead of waiting for the endpoint."""
    ep = Endpoint(delay=20.0)
    try:
        stop = threading.Event()
        llm = OpenAILLM(_settings(ep.url, retries=0), should_stop=stop.is_set)
        threading.Timer(0.5, stop.set).start()
        start = time.perf_counter()
        out = llm.complete(["a", "b", "c", "d", "e", "f"], seed=0)
        assert time.perf_counter() - start < 10  # a liveness bound: the requests take 20 s
        assert out == [CloudError("stopped")] * 6 and llm.failures == 0
    finally:
        ep.close()

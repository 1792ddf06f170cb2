"""Health checks against real things: an HTTP server on 127.0.0.1, real executables, the real NVML probe."""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aictl.agents.gpu import GpuReport, gpu_info
from aictl.agents.health import check, ollama_model_size_gb, quick_check
from aictl.domain.models import AIRecord

MODELS = {"data": [{"id": "gpt-5.5", "object": "model"}, {"id": "claude-sonnet-4-5", "object": "model"}]}
TAGS = {"models": [{"name": "qwen2.5-coder:7b", "size": 4683087332}, {"name": "llama3:latest", "size": 4661224676}]}


class Provider:
    """A tiny model-list server: GET /v1/models and /api/tags; records each request's headers."""

    def __init__(self, status: int = 200):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = {"/v1/models": MODELS, "/api/tags": TAGS}.get(self.path.split("?")[0])
                code = status if body is not None else 404
                data = json.dumps(body if code == 200 else {"error": "nope"}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider():
    p = Provider()
    yield p
    p.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ai(connector: str, model: str | None = None, **config) -> AIRecord:
    return AIRecord(id="t", connector=connector, model=model, config=config)


def test_openai_models_listed_with_the_key_sent_and_never_reported(provider, monkeypatch):
    monkeypatch.setenv("MY_OPENAI_KEY", "sk-test-not-a-real-key-000000000")
    res = check(ai("openai", "gpt-5.5", base_url=provider.url + "/v1", api_key_env="MY_OPENAI_KEY"))
    assert res["ok"] and res["model_listed"] and res["models"] == ["gpt-5.5", "claude-sonnet-4-5"]
    path, headers = provider.seen[-1]
    assert path == "/v1/models" and headers["authorization"] == "Bearer sk-test-not-a-real-key-000000000"
    assert "sk-test" not in json.dumps(res)
    missing = check(ai("openai", "gpt-4o", base_url=provider.url, api_key_env="MY_OPENAI_KEY"))
    assert not missing["ok"] and not missing["model_listed"] and "gpt-4o NOT listed" in missing["detail"]


def test_anthropic_sends_its_headers_and_a_missing_key_fails_the_check(provider, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    res = check(ai("anthropic", "claude-sonnet-4-5", base_url=provider.url))
    assert res["model_listed"] and not res["ok"] and "ANTHROPIC_API_KEY is not set" in res["detail"]
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert check(ai("anthropic", "claude-sonnet-4-5", base_url=provider.url))["ok"]
    headers = provider.seen[-1][1]
    assert headers["x-api-key"] == "k" and headers["anthropic-version"] == "2023-06-01"


def test_ollama_tags_name_match_and_model_size(provider):
    assert check(ai("ollama", "llama3", base_url=provider.url))["ok"]  # llama3 is llama3:latest
    res = check(ai("ollama", "qwen2.5-coder:7b", base_url=provider.url))
    assert res["ok"] and provider.seen[-1][0] == "/api/tags"
    assert ollama_model_size_gb(ai("ollama", "qwen2.5-coder:7b", base_url=provider.url)) == 4.36
    assert ollama_model_size_gb(ai("ollama", "nope", base_url=provider.url)) is None
    assert ollama_model_size_gb(ai("ollama", "x", model_size_gb=12)) == 12.0
    assert not check(ai("ollama", "not-pulled", base_url=provider.url))["ok"]


def test_unreachable_or_refusing_provider_is_a_failed_check_not_an_exception(monkeypatch):
    down = f"http://127.0.0.1:{free_port()}"
    res = check(ai("ollama", "x", base_url=down))
    assert not res["ok"] and down in res["detail"]
    refusing = Provider(status=401)
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "bad")
        res = check(ai("openai", "gpt-5.5", base_url=refusing.url))
        assert not res["ok"] and "HTTP 401" in res["detail"]
    finally:
        refusing.close()


def fake_cli(tmp_path, name="fakeagent", body='echo "fakeagent 1.2.3 (test build)"'):
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_cli_binary_runs_for_its_version(tmp_path, monkeypatch):
    good = fake_cli(tmp_path)
    res = check(ai("claude-code", binary=str(good)))
    assert res["ok"] and res["version"] == "fakeagent 1.2.3 (test build)" and res["binary"] == str(good)
    broken = fake_cli(tmp_path, "broken", 'echo "cannot start" >&2; exit 3')
    res = check(ai("codex", binary=str(broken)))
    assert not res["ok"] and "exited 3" in res["detail"] and "cannot start" in res["detail"]
    res = check(ai("codex", binary=str(tmp_path / "absent")))
    assert not res["ok"] and "not found" in res["detail"]
    # a name is looked up on PATH
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert check(ai("codex", binary="fakeagent"))["ok"]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert quick_check(ai("codex", binary="fakeagent")) == ["API key variable OPENAI_API_KEY is not set"]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert quick_check(ai("codex", binary="fakeagent")) == []
    assert quick_check(ai("codex", binary="nosuchagent"))[0].startswith("nosuchagent not found on PATH")


def test_check_never_raises(tmp_path):
    res = check(ai("claude-code", binary=str(tmp_path / "absent")))
    assert res["ok"] is False and "elapsed_s" in res
    assert check(ai("command"))["ok"]


def test_gpu_probe_is_clean_without_a_gpu():
    report = gpu_info()
    if report.present:
        pytest.skip("this machine has a GPU")
    assert report.gpus == [] and report.reason.startswith("no GPU")


def test_router_asks_the_provider_for_the_model_size(provider, plane):
    # No GPU here: the GPU is injected; the model size comes from the real HTTP server's /api/tags.
    from aictl.agents.router import Router

    plane.ai("q", "ollama", model="qwen2.5-coder:7b", config={"base_url": provider.url})
    t = plane.task("t")
    small = GpuReport(gpus=[{"index": 0, "name": "T4", "total_mb": 16000, "free_mb": 3000}])
    route = Router(plane.store, plane.settings, gpu_info=lambda: small).explain(t)
    assert route.candidates[0].reasons == ["needs 4.4 GB, GPU 0 has 2.9 GB free"]
    roomy = GpuReport(gpus=[{"index": 0, "name": "T4", "total_mb": 16000, "free_mb": 15000}])
    assert Router(plane.store, plane.settings, gpu_info=lambda: roomy).explain(t).chosen == "q"

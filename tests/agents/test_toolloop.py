"""The workspace tools against a real directory, the local (and unreachable docker) sandbox, and the
pieces of the loop that need no provider: retry headers, error kinds, prices.

The loop itself, with the real SDKs against the fake provider, is in test_sdk_connectors.py.
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aictl.agents.connectors.apicommon import http_error, provider_message, reset_at, retry_after_s
from aictl.agents.connectors.tools import (
    LIST_LIMIT,
    READ_LIMIT,
    SPECS,
    WRITE_LIMIT,
    SandboxUnavailable,
    WorkspaceTools,
    clip,
)
from aictl.agents.pricing import cost_usd, prices_for
from aictl.domain.errors import ConfigError
from aictl.sandbox import SandboxSpec, get_sandbox


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / "README.md").write_text("# demo\n")
    (root / ".git").write_text("gitdir: /somewhere/.git/worktrees/ws\n")  # what a worktree has
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.txt").write_text("top secret\n")
    return d


def tools(root: Path, **kw) -> WorkspaceTools:
    kw.setdefault("sandbox", get_sandbox("local"))
    kw.setdefault("spec", SandboxSpec(timeout_s=30))
    return WorkspaceTools(root, **kw)


# -- files -------------------------------------------------------------------------------------


def test_read_write_list_inside_the_workspace(ws):
    t = tools(ws)
    out = t.call("write_file", {"path": "pkg/new/mod.py", "content": "x = 1\n"})
    assert out.ok, out.output
    assert (ws / "pkg" / "new" / "mod.py").read_text() == "x = 1\n"
    assert "6 bytes" in out.output and "pkg/new/mod.py" in out.output
    read = t.call("read_file", {"path": "src/app.py"})
    assert read.ok and read.output == "print('hi')\n"
    listing = t.call("list_files", {})
    assert listing.ok
    assert listing.output.splitlines() == ["README.md", "pkg/new/mod.py", "src/app.py"]  # .git is not listed
    assert t.call("list_files", {"path": "src"}).output == "src/app.py"
    assert t.call("list_files", {"pattern": "*.py"}).output.splitlines() == ["pkg/new/mod.py", "src/app.py"]
    assert t.call("list_files", {"path": ".", "pattern": "src/*"}).output == "src/app.py"
    assert "no files match" in t.call("list_files", {"pattern": "*.rs"}).output


def test_an_absolute_path_inside_the_workspace_is_accepted(ws):
    t = tools(ws)
    out = t.call("read_file", {"path": str(ws / "src" / "app.py")})
    assert out.ok and out.output == "print('hi')\n"


def test_the_docker_mount_path_means_the_workspace(ws):
    t = tools(ws, spec=SandboxSpec(backend="docker", mount="/workspace"))
    assert t.call("write_file", {"path": "/workspace/a.txt", "content": "A"}).ok
    assert (ws / "a.txt").read_text() == "A"
    local = tools(ws)  # for the local backend /workspace is just a path outside
    assert not local.call("write_file", {"path": "/workspace/b.txt", "content": "B"}).ok


@pytest.mark.parametrize(
    "path,why",
    [
        ("../outside/secret.txt", "'..' may not be used"),
        ("src/../../outside/secret.txt", "'..' may not be used"),
        ("src/../README.md", "'..' may not be used"),  # inside, but '..' is refused outright
        ("..", "'..' may not be used"),
        ("/etc/passwd", "outside the workspace"),
        ("a/\x00b", "NUL byte"),
    ],
)
def test_paths_that_leave_the_workspace_are_refused(ws, outside, path, why):
    t = tools(ws)
    for name, args in (
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "pwned"}),
        ("list_files", {"path": path}),
    ):
        out = t.call(name, args)
        assert not out.ok, (name, path, out.output)
        assert why in out.output
    assert (outside / "secret.txt").read_text() == "top secret\n"
    assert not any(p.read_text() == "pwned" for p in outside.parent.rglob("*") if p.is_file())


def test_symlinks_that_lead_out_are_refused(ws, outside):
    (ws / "escape").symlink_to(outside)  # a directory link
    (ws / "leak.txt").symlink_to(outside / "secret.txt")  # a file link
    (ws / "dangling").symlink_to(outside / "new.txt")  # writing through it would create a file outside
    t = tools(ws)
    for name, args in (
        ("read_file", {"path": "escape/secret.txt"}),
        ("read_file", {"path": "leak.txt"}),
        ("write_file", {"path": "escape/evil.txt", "content": "x"}),
        ("write_file", {"path": "leak.txt", "content": "x"}),
        ("write_file", {"path": "dangling", "content": "x"}),
        ("list_files", {"path": "escape"}),
    ):
        out = t.call(name, args)
        assert not out.ok and "symbolic link" in out.output, (name, args, out.output)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "top secret\n"


def test_a_symlink_that_stays_inside_is_followed(ws):
    (ws / "link.py").symlink_to(ws / "src" / "app.py")
    t = tools(ws)
    assert t.call("read_file", {"path": "link.py"}).output == "print('hi')\n"
    assert t.call("write_file", {"path": "link.py", "content": "print('bye')\n"}).ok
    assert (ws / "src" / "app.py").read_text() == "print('bye')\n"


def test_writes_under_git_are_refused_reads_are_not(ws):
    t = tools(ws)
    out = t.call("write_file", {"path": ".git", "content": "gitdir: /elsewhere"})
    assert not out.ok and ".git" in out.output
    assert not t.call("write_file", {"path": ".git/hooks/pre-commit", "content": "x"}).ok
    assert (ws / ".git").read_text().startswith("gitdir: /somewhere")
    assert t.call("read_file", {"path": ".git"}).ok


def test_read_limits_binary_and_missing_files(ws):
    (ws / "big.txt").write_text("a" * (READ_LIMIT + 10))
    (ws / "blob.bin").write_bytes(b"\x00\x01\x02" * 10)
    t = tools(ws)
    big = t.call("read_file", {"path": "big.txt"})
    assert big.ok and f"first {READ_LIMIT} of {READ_LIMIT + 10} bytes" in big.output
    assert "binary file of 30 bytes" in t.call("read_file", {"path": "blob.bin"}).output
    missing = t.call("read_file", {"path": "nope.txt"})
    assert not missing.ok and "no such file" in missing.output
    directory = t.call("read_file", {"path": "src"})
    assert not directory.ok and "directory" in directory.output


def test_write_limit_and_bad_arguments(ws):
    t = tools(ws)
    huge = t.call("write_file", {"path": "huge.txt", "content": "a" * (WRITE_LIMIT + 1)})
    assert not huge.ok and not (ws / "huge.txt").exists()
    assert "missing argument 'content'" in t.call("write_file", {"path": "a.txt"}).output
    assert "must be a string" in t.call("read_file", {"path": 3}).output
    assert "JSON object" in t.call("read_file", ["a"]).output
    assert "may not be empty" in t.call("read_file", {"path": " "}).output
    assert t.call("write_file", {"path": "empty.txt", "content": ""}).ok  # an empty file is a fine thing to write
    unknown = t.call("delete_file", {"path": "a"})
    assert not unknown.ok and "unknown tool 'delete_file'" in unknown.output and "read_file" in unknown.output


def test_list_is_capped(ws):
    many = ws / "many"
    many.mkdir()
    for i in range(LIST_LIMIT + 5):
        (many / f"f{i:04d}.txt").write_text("")
    out = tools(ws).call("list_files", {"path": "many"})
    lines = out.output.splitlines()
    assert len(lines) == LIST_LIMIT + 1 and "5 more not shown" in lines[-1]


def test_only_the_tools_the_policy_allows_are_offered_and_run(ws):
    t = tools(ws, allowed=["read", "list"])
    assert [s.name for s in t.specs()] == ["read_file", "list_files"]
    out = t.call("write_file", {"path": "a.txt", "content": "x"})
    assert not out.ok and "not allowed" in out.output and not (ws / "a.txt").exists()
    assert not t.call("run_command", {"command": "touch ran"}).ok and not (ws / "ran").exists()
    assert [s.name for s in tools(ws, allowed=[]).specs()] == []
    assert [s.name for s in tools(ws, allowed=None).specs()] == list(SPECS)


# -- commands ----------------------------------------------------------------------------------


def test_run_command_runs_in_the_workspace_through_the_sandbox(ws):
    lines: list[tuple[str, str]] = []
    t = tools(ws, on_output=lambda stream, line: lines.append((stream, line)))
    out = t.call("run_command", {"command": "cat src/app.py; echo made > out.txt; echo oops >&2"})
    assert out.ok
    assert out.output.startswith("exit code: 0")
    assert "print('hi')" in out.output and "[stderr]\noops" in out.output
    assert (ws / "out.txt").read_text() == "made\n"
    assert ("stdout", "print('hi')") in lines and ("stderr", "oops") in lines
    assert t.sandbox_settings.get("backend") == "local"
    failed = t.call("run_command", {"command": "exit 3"})
    assert not failed.ok and failed.output.startswith("exit code: 3")


def test_run_command_has_its_own_timeout(ws):
    t = tools(ws, command_timeout_s=0.5)
    out = t.call("run_command", {"command": "sleep 30"})
    assert not out.ok and "timed out after 0.5s" in out.output


def test_run_command_stops_on_cancel(ws):
    cancel = threading.Event()
    t = tools(ws, cancel=cancel)
    threading.Timer(0.3, cancel.set).start()
    out = t.call("run_command", {"command": "sleep 30"})
    assert not out.ok and out.output.startswith("cancelled")


def test_run_command_without_time_left_is_refused(ws):
    t = tools(ws, deadline=time.monotonic() - 1)
    out = t.call("run_command", {"command": "touch ran"})
    assert not out.ok and "no time" in out.output and not (ws / "ran").exists()


def test_a_sandbox_that_cannot_start_ends_the_run(ws, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")  # a real docker client, an engine that is not there
    t = tools(ws, sandbox=get_sandbox("docker"), spec=SandboxSpec(backend="docker", timeout_s=10))
    with pytest.raises(SandboxUnavailable):
        t.call("run_command", {"command": "true"})


def test_clip_keeps_both_ends():
    text = "HEAD" + "x" * 100 + "TAIL"
    out = clip(text, 40)
    assert out.startswith("HEAD") and out.endswith("TAIL") and "omitted" in out
    assert clip("short", 40) == "short"


# -- retry headers and error kinds -------------------------------------------------------------


def test_retry_after_forms():
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"Retry-After": "2"}) == 2.0
    assert retry_after_s({"retry-after": "1.5"}) == 1.5
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after_s({"retry-after": date}) <= 30
    assert retry_after_s({}) is None and retry_after_s(None) is None


def test_reset_headers():
    now = 1_800_000_000.0
    iso = datetime.fromtimestamp(now + 42, tz=UTC).isoformat().replace("+00:00", "Z")
    assert reset_at({"anthropic-ratelimit-requests-reset": iso}, now) == pytest.approx(now + 42)
    assert reset_at({"anthropic-ratelimit-unified-reset": str(int(now + 7))}, now) == now + 7
    assert reset_at({"x-ratelimit-reset-requests": "6m0s"}, now) == now + 360
    assert reset_at({"x-ratelimit-reset-tokens": "20ms"}, now) == pytest.approx(now + 0.02)
    assert reset_at({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "1m30s"}, now) == now + 90
    assert reset_at({"anthropic-ratelimit-requests-limit": "50", "content-type": "x"}, now) is None


def test_error_kinds():
    common = dict(connector="anthropic", base_url="http://h", key_env="MY_KEY")
    auth = http_error(401, **common, message="invalid x-api-key")
    assert auth.kind == "auth" and not auth.retryable and "$MY_KEY" in auth.message
    assert http_error(403, **common).kind == "auth"
    limited = http_error(429, **common, headers={"retry-after": "3"})
    assert limited.kind == "rate_limit" and limited.retryable and limited.retry_after == 3.0
    assert limited.retry_at == pytest.approx(time.time() + 3, abs=1)
    assert http_error(529, **common).kind == "overloaded" and http_error(503, **common).retryable
    assert http_error(500, **common).kind == "overloaded" and http_error(500, **common).retryable
    assert not http_error(400, **common).retryable
    # a 404 that names a model is a wrong model name; any other, an endpoint the server does not have
    assert "model name" in http_error(404, **common, message="model: claude-nope").message
    missing = http_error(404, **common, message="Not Found", endpoint="http://h/v1/responses")
    assert "has no endpoint /v1/responses (HTTP 404)" in missing.message and "model name" not in missing.message
    assert "api=chat" in missing.message and not missing.retryable
    # an error event inside a stream that had answered 200
    assert http_error(200, **common, error_type="overloaded_error").kind == "overloaded"


def test_provider_message_shapes():
    assert provider_message({"type": "error", "error": {"type": "x", "message": "bad thing\nmore"}}) == "bad thing"
    assert provider_message({"error": "model not found"}) == "model not found"
    assert provider_message(None, "fallback") == "fallback"


# -- prices ------------------------------------------------------------------------------------


def test_prices_from_table_override_and_unknown():
    assert prices_for("claude-sonnet-4-5")["input"] == 3.0
    assert prices_for("claude-sonnet-4-5-20250929") == prices_for("claude-sonnet-4-5")  # a dated snapshot
    assert prices_for("gpt-4o-2024-08-06") == prices_for("gpt-4o")
    assert prices_for("some-new-model") is None  # never a guess
    assert prices_for("some-new-model", connector="openai") is None
    assert prices_for("llama3.2:3b", connector="ollama")["input"] == 0.0  # local hardware
    assert prices_for("gpt-4o", override={"input": 1, "output": 2}) == {"input": 1.0, "output": 2.0}
    with pytest.raises(ConfigError):
        prices_for("x", override={"input": 1})
    with pytest.raises(ConfigError):
        prices_for("x", override={"input": -1, "output": 1})
    with pytest.raises(ConfigError):
        prices_for("x", override={"input": 1, "output": 1, "per_call": 1})


def test_cost():
    prices = prices_for("claude-sonnet-4-5")
    usage = {
        "input_tokens": 1_000_000,
        "output_tokens": 100_000,
        "cache_read_tokens": 1_000_000,
        "cache_write_tokens": 0,
    }
    assert cost_usd(usage, prices) == pytest.approx(3.0 + 1.5 + 0.3)
    assert cost_usd(usage, None) is None
    # without a cache price, cached tokens cost what input costs
    assert cost_usd({"cache_read_tokens": 1_000_000}, {"input": 2.0, "output": 1.0}) == pytest.approx(2.0)


def test_importing_the_connectors_does_not_import_the_sdks():
    import subprocess
    import sys

    code = (
        "import sys, aictl.agents.connectors.anthropic_api, aictl.agents.connectors.openai_api, "
        "aictl.agents.connectors.ollama_api; "
        "print(sorted(m for m in ('anthropic', 'openai', 'ollama', 'httpx', 'httpx2') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ},
    )
    assert out.stdout.strip() == "[]"


def test_read_file_of_a_fifo_the_agent_made_is_refused_at_once(ws):
    """`mkfifo f` then `read_file f` used to block the tool loop past the run's deadline and past cancel."""
    t = tools(ws)
    assert t.call("run_command", {"command": "mkfifo f"}).ok
    started = time.monotonic()
    out = t.call("read_file", {"path": "f"})
    assert time.monotonic() - started < 5
    assert not out.ok and out.output == "f: refused: a FIFO"


def test_write_file_to_a_fifo_is_refused_at_once(ws):
    os.mkfifo(ws / "w")
    started = time.monotonic()
    out = tools(ws).call("write_file", {"path": "w", "content": "x"})
    assert time.monotonic() - started < 5 and not out.ok

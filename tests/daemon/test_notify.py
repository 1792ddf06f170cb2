"""Notifications against real parts: an HTTP server on 127.0.0.1, a real hook process, real config files."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aictl.config import Settings, load_settings
from aictl.daemon.notify import Notifier, verify_signature
from aictl.domain.errors import ConfigError


class Hook:
    """A webhook receiver: answers each POST with the next scripted (status, headers), then 200."""

    def __init__(self, script=()):
        self.script = list(script)
        self.requests: list[dict] = []
        self.got = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook.got:
                    hook.requests.append(
                        {"t": time.monotonic(), "path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    status, headers = hook.script.pop(0) if hook.script else (200, {})
                    hook.got.notify_all()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 30) -> list[dict]:
        with self.got:
            assert self.got.wait_for(lambda: len(self.requests) >= n, timeout), f"got {len(self.requests)} of {n}"
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def settings(*channels, **kw) -> Settings:
    return Settings(actor="tester@host", notifications=list(channels), **kw)


def closed_port() -> int:
    """A port nothing listens on: connecting is refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_webhook_body_headers_and_signature(hook, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    n = Notifier.from_settings(
        settings({"type": "webhook", "url": hook.url, "secret_env": "HOOK_SECRET", "on": ["task.failed"]})
    )
    assert n.notify("task.failed", {"task_id": 7, "title": "Fix login", "reason": "tests failed"})
    assert not n.notify("task.done", {"task_id": 8})  # not subscribed: nothing sent
    assert n.close(10)
    [req] = hook.wait_for(1)
    h, body = req["headers"], req["body"]
    event = json.loads(body)
    assert event["type"] == "task.failed" and event["data"] == {
        "task_id": 7,
        "title": "Fix login",
        "reason": "tests failed",
    }
    assert event["source"]["actor"] == "tester@host" and event["id"] and event["created_at"]
    assert h["Content-Type"] == "application/json"
    assert h["User-Agent"].startswith("aictl/")
    assert h["X-Aictl-Event"] == "task.failed"
    assert len(h["X-Aictl-Delivery"]) == 36
    # the receiver's check, written out as the docs tell users to write it
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert h["X-Aictl-Signature"] == expected
    assert verify_signature(b"s3cret", body, h["X-Aictl-Signature"])
    assert not verify_signature(b"other", body, h["X-Aictl-Signature"])
    assert not verify_signature(b"s3cret", body + b" ", h["X-Aictl-Signature"])
    assert n.stats == {"queued": 1, "delivered": 1, "failed": 0, "dropped": 0}


def test_no_secret_no_signature_header(hook):
    n = Notifier.from_settings(settings({"type": "webhook", "url": hook.url}))
    n.notify("task.done", {"task_id": 1})
    assert n.close(10)
    assert "X-Aictl-Signature" not in hook.wait_for(1)[0]["headers"]


def test_retries_500_twice_then_200():
    hook = Hook([(500, {}), (502, {})])
    try:
        n = Notifier.from_settings(settings({"type": "webhook", "url": hook.url, "retries": 3}), backoff_base=0.05)
        [d] = n.send_now("task.done", {"task_id": 1})
        assert d.ok and d.attempts == 3 and d.status == 200
        assert d.waits == [0.05, 0.1]  # exponential backoff between the attempts
        reqs = hook.wait_for(3)
        assert len(reqs) == 3
        # a retry re-sends the same event, not a new one
        assert len({json.loads(r["body"])["id"] for r in reqs}) == 1
    finally:
        hook.close()


def test_429_honours_retry_after():
    hook = Hook([(429, {"Retry-After": "1"})])
    try:
        n = Notifier.from_settings(settings({"type": "webhook", "url": hook.url}), backoff_base=0.01)
        [d] = n.send_now("task.failed", {"task_id": 1})
        assert d.ok and d.attempts == 2
        assert d.waits == [1.0]  # the server's Retry-After, not the 0.01 s backoff
        first, second = hook.wait_for(2)
        assert second["t"] - first["t"] >= 0.95  # it really waited (a lower bound: cannot flake)
    finally:
        hook.close()


def test_gives_up_after_retries_and_does_not_retry_4xx():
    hook = Hook([(503, {})] * 10)
    try:
        n = Notifier.from_settings(settings({"type": "webhook", "url": hook.url, "retries": 2}), backoff_base=0.01)
        [d] = n.send_now("task.failed", {})
        assert not d.ok and d.attempts == 3 and d.status == 503 and "HTTP 503" in d.error
    finally:
        hook.close()
    hook = Hook([(404, {})])
    try:
        n = Notifier.from_settings(settings({"type": "webhook", "url": hook.url, "retries": 5}), backoff_base=0.01)
        [d] = n.send_now("task.failed", {})
        assert not d.ok and d.attempts == 1 and d.status == 404
    finally:
        hook.close()


def call_in_thread(fn, *args):
    """Run fn in a thread; return (thread, result box) so a test can see whether the call came back."""
    box = []
    t = threading.Thread(target=lambda: box.append(fn(*args)), daemon=True)
    t.start()
    return t, box


def test_dead_endpoint_never_blocks_notify_and_close_gives_up_at_its_timeout():
    url = f"http://127.0.0.1:{closed_port()}/hook"
    # 10 retries with backoff 1, 2, 4, … (capped at 30) s: one delivery takes about three minutes to give up.
    n = Notifier.from_settings(settings({"type": "webhook", "url": url, "retries": 10}), backoff_base=1.0)
    t, box = call_in_thread(lambda: [n.notify("task.failed", {"task_id": i}) for i in range(5)])
    t.join(20)  # far less than one delivery's retries, far more than queueing five events takes
    assert not t.is_alive() and box == [[True] * 5], "notify() waited for a delivery"
    # it came back while the first delivery is still being retried: nothing delivered or given up yet
    assert n.stats["delivered"] == 0 and n.stats["failed"] == 0 and n.stats["queued"] == 5
    # close() gives up at its timeout: had it waited for the retries it would report a full flush.
    assert n.close(0.3) is False
    assert n.stats["delivered"] == 0
    assert not n.notify("task.failed", {})  # after close: dropped, not queued


def test_notify_returns_while_the_server_is_still_holding_the_request():
    release = threading.Event()
    seen = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.set()
            release.wait(60)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}/"
        n = Notifier.from_settings(settings({"type": "webhook", "url": url}))
        n.notify("task.failed", {"task_id": 1})
        assert seen.wait(20)  # the delivery thread is inside the request now …
        t, box = call_in_thread(n.notify, "task.done", {"task_id": 2})
        t.join(20)  # … and a second notify() comes back without waiting for it (the server answers only on release)
        assert not t.is_alive() and box == [True]
        release.set()
        assert n.close(20)
        assert n.stats["delivered"] == 2
    finally:
        release.set()
        srv.shutdown()
        srv.server_close()


def test_blackhole_endpoint_close_does_not_wait_for_a_hanging_request():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)  # accepts connections (the kernel does) but never answers
    try:
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/"
        n = Notifier.from_settings(settings({"type": "webhook", "url": url, "timeout_s": 60, "retries": 0}))
        assert n.notify("daemon.stopped", {})
        assert n.close(0.3) is False
        assert n.stats["delivered"] == 0 and n.stats["failed"] == 0  # the request was still hanging
    finally:
        srv.close()


def test_full_queue_drops_with_a_count():
    url = f"http://127.0.0.1:{closed_port()}/"
    n = Notifier.from_settings(settings({"type": "webhook", "url": url, "retries": 10}), queue_size=2)
    results = [n.notify("task.failed", {"i": i}) for i in range(10)]
    # the thread holds at most one event while it retries; the queue holds two more; the rest are dropped
    assert results.count(False) >= 7 and n.stats["dropped"] == results.count(False)
    n.close(0.1)


def test_command_hook_gets_the_event_json_on_stdin(tmp_path):
    out = tmp_path / "got.json"
    script = (
        "import json, os, sys; e = json.load(sys.stdin); "
        f"json.dump({{'env': os.environ['AICTL_EVENT'], 'event': e}}, open({str(out)!r}, 'w'))"
    )
    n = Notifier.from_settings(settings({"type": "command", "command": [sys.executable, "-c", script]}))
    [d] = n.send_now("task.awaiting_approval", {"task_id": 3, "title": "Deploy"})
    assert d.ok, d.error
    got = json.loads(out.read_text())
    assert got["env"] == "task.awaiting_approval"
    assert got["event"]["type"] == "task.awaiting_approval" and got["event"]["data"]["task_id"] == 3


def test_command_hook_as_shell_string_and_failure_reported(tmp_path):
    out = tmp_path / "got.txt"
    n = Notifier.from_settings(settings({"type": "command", "command": f'echo "$AICTL_EVENT" > {out}'}))
    assert n.send_now("task.done", {})[0].ok
    assert out.read_text().strip() == "task.done"
    n = Notifier.from_settings(
        settings({"type": "command", "command": "echo nope >&2; exit 3", "retries": 1}), backoff_base=0.01
    )
    [d] = n.send_now("task.done", {})
    assert not d.ok and d.attempts == 2 and d.status == 3 and "nope" in d.error
    n = Notifier.from_settings(settings({"type": "command", "command": ["sleep", "5"], "timeout_s": 0.2, "retries": 0}))
    [d] = n.send_now("task.done", {})
    assert not d.ok and "timed out" in d.error


def test_console_one_line_on_stderr(capsys):
    n = Notifier.from_settings(settings({"type": "console"}))
    n.notify("task.failed", {"task_id": 4, "title": "Fix the build", "reason": "exit 1"})
    assert n.close(10)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("aictl: task.failed task_id=4 ") and 'title="Fix the build"' in err


def test_a_failing_channel_does_not_stop_the_others(hook):
    url = f"http://127.0.0.1:{closed_port()}/"
    n = Notifier.from_settings(
        settings({"type": "webhook", "url": url, "retries": 0}, {"type": "webhook", "url": hook.url})
    )
    n.notify("task.failed", {"task_id": 1})
    assert n.close(10)
    assert len(hook.wait_for(1)) == 1
    assert n.stats["delivered"] == 1 and n.stats["failed"] == 1


# -- configuration --------------------------------------------------------------------


def write_config(project, text: str):
    (project / ".ai").mkdir(exist_ok=True)
    (project / ".ai" / "config.yaml").write_text(text)
    return project / ".ai" / "config.yaml"


def test_config_file_loads_channels(tmp_path):
    write_config(
        tmp_path,
        """
notifications:
  - type: webhook
    url: https://hooks.example.com/aictl
    on: [task.failed, task.awaiting_approval]
    secret_env: AICTL_HOOK_SECRET
    retries: 5
  - type: command
    command: ["notify-send", "aictl"]
  - {type: console, on: "*"}
""",
    )
    s = load_settings(tmp_path)
    assert [c.type for c in s.notifications] == ["webhook", "command", "console"]
    assert s.notifications[0].on == ["task.failed", "task.awaiting_approval"] and s.notifications[0].retries == 5
    assert s.notifications[1].on == ["*"] and s.notifications[2].on == ["*"]
    assert s.sources["notifications"] == str(tmp_path / ".ai" / "config.yaml")


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("- {type: webhook}", "notifications[0]: Value error, a webhook needs url"),
        ("- {type: webhook, url: ftp://x}", "must start with http:// or https://"),
        ("- {type: pager}", "notifications[0].type"),
        ("- {type: console}\n  - {type: command}", "notifications[1]: Value error, a command hook needs command"),
        ("- {type: console, on: [task.exploded]}", "unknown event 'task.exploded'"),
        ("- {type: console, colour: red}", "notifications[0].colour: Extra inputs are not permitted"),
        ("- {type: webhook, url: 'http://x', secret_env: 'abc def'}", "NAME of an environment variable"),
        ("- {type: command, command: [x], url: 'http://x'}", "url is only for webhooks"),
        ("- {type: webhook, url: 'http://x', retries: -1}", "notifications[0].retries"),
    ],
)
def test_config_errors_name_the_file_and_the_entry(tmp_path, body, fragment):
    path = write_config(tmp_path, "notifications:\n  " + body + "\n")
    with pytest.raises(ConfigError) as e:
        load_settings(tmp_path)
    assert str(path) in e.value.message and fragment in e.value.message, e.value.message


def test_missing_secret_env_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_SECRET", raising=False)
    path = write_config(
        tmp_path, "notifications:\n  - {type: webhook, url: 'http://127.0.0.1:9/', secret_env: NOPE_SECRET}\n"
    )
    with pytest.raises(ConfigError) as e:
        Notifier.from_settings(load_settings(tmp_path))
    assert str(path) in e.value.message and "NOPE_SECRET" in e.value.message and "notifications[0]" in e.value.message


def test_env_var_holds_a_json_list(tmp_path, monkeypatch):
    monkeypatch.setenv("AICTL_NOTIFICATIONS", '[{"type": "console", "on": ["task.done"]}]')
    s = load_settings(tmp_path)
    assert s.notifications[0].on == ["task.done"] and s.sources["notifications"] == "env AICTL_NOTIFICATIONS"
    monkeypatch.setenv("AICTL_NOTIFICATIONS", "[{")
    with pytest.raises(ConfigError, match="JSON list"):
        load_settings(tmp_path)


# -- aictl notify test ------------------------------------------------------------------


def test_cli_notify_test_reports_each_channel(project, hook, capsys):
    from aictl.cli.main import main

    dead = f"http://127.0.0.1:{closed_port()}/"
    write_config(
        project,
        f"""
notifications:
  - {{type: webhook, url: "{hook.url}", name: good}}
  - {{type: webhook, url: "{dead}", name: dead, retries: 0}}
  - {{type: console, name: only-failures, on: [task.failed]}}
""",
    )
    code = main(["notify", "test", "-o", "json"])
    out, err = capsys.readouterr()
    assert code == 1 and "1 of 3 channel(s) failed" in err
    rows = {r["channel"]: r for r in json.loads(out)}
    assert rows["good"]["ok"] and rows["good"]["status"] == 200
    assert not rows["dead"]["ok"] and "Connection" in rows["dead"]["error"]
    assert rows["only-failures"]["ok"]  # a plain test goes to every channel
    assert json.loads(hook.wait_for(1)[0]["body"])["type"] == "test"

    code = main(["notify", "test", "--event", "task.done", "-o", "json"])
    out, err = capsys.readouterr()
    rows = {r["channel"]: r for r in json.loads(out)}
    assert rows["only-failures"]["skipped"] and "not subscribed" in rows["only-failures"]["error"]
    assert json.loads(hook.wait_for(2)[1]["body"])["type"] == "task.done"

    assert main(["notify", "test", "--event", "bogus"]) == 2


def test_cli_notify_test_without_channels(project, capsys):
    from aictl.cli.main import main

    assert main(["notify", "test"]) == 1
    assert "no notification channels are configured" in capsys.readouterr().err

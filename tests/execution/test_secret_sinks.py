"""Secrets never reach a sink: a hostile model reads every secret aictl knows of and prints it everywhere.

The AI's key sits in a variable with a harmless name and value (`--api-key-env ATK_KEY`), so no pattern
can find it: only the registry of known secret values (aictl.domain.redact.register) does. The model
reads aictl's environment through /proc/$PPID/environ, echoes the key, prints an sk-ant-… key and writes
both into a file; `aictl task execute` runs as a real process, and every sink is grepped: its stdout and
stderr (JSON and table mode), the store (events, activity, result), evidence blobs, `task get -o json`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from tests.fakeprovider import reply, tool

ATK = "plainharmlessvalue42"  # no pattern matches this: only the registry knows it is a key
ANT = "sk-ant-api03-" + "Q" * 30
HOOK = "hooksecretvalue77"
DB_PASSWORD = "dbpassw0rdvalue"


def _aictl(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "aictl.cli.main", *args], cwd=root, env=env, capture_output=True, timeout=120
    )


def _files_holding(root: Path, secret: bytes, skip: tuple[str, ...]) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and not any(part in skip for part in p.parts) and secret in p.read_bytes():
            hits.append(str(p.relative_to(root)))
    return hits


def test_a_hostile_model_cannot_put_any_known_secret_into_any_sink(fake_provider, git_project):
    env = {**os.environ, "ATK_KEY": ATK, "AICTL_LOG_LEVEL": "debug"}
    reg = _aictl(
        git_project,
        env,
        "ai",
        "register",
        "api-1",
        "--connector",
        "anthropic",
        "--model",
        "claude-haiku-4-5",
        "--base-url",
        fake_provider.url,
        "--api-key-env",
        "ATK_KEY",
        "--config",
        "retry_backoff_s=0.01",
    )
    assert reg.returncode == 0, reg.stderr
    leak = f"tr '\\0' '\\n' < /proc/$PPID/environ | grep ATK_KEY; echo key=$ATK_KEY; echo {ANT}"
    for mode in ("json", "table"):
        tid = json.loads(
            _aictl(git_project, env, "task", "create", f"leak {mode}", "--lock", f"{mode}.txt", "-o", "json").stdout
        )["id"]
        fake_provider.script(
            reply(f"Reading {ATK}", [tool("run_command", {"command": leak})]),
            reply(f"Found {ATK} and {ANT}", [tool("write_file", {"path": f"{mode}.txt", "content": f"{ATK}\n"})]),
            reply(f"Done: the key is {ATK}, also {ANT}"),
        )
        run = _aictl(git_project, env, "task", "execute", str(tid), "--ai", "api-1", "-o", mode)
        assert run.returncode == 0, run.stderr.decode()
        assert b"[REDACTED]" in run.stdout + run.stderr  # the model did print them
        for secret in (ATK, ANT):
            assert secret.encode() not in run.stdout and secret.encode() not in run.stderr, mode
        got = _aictl(git_project, env, "task", "get", str(tid), "-o", "json")
        assert ATK.encode() not in got.stdout and ANT.encode() not in got.stdout
    # Provider-bound: the tool results sent back to the model (the env dump, the echo) carry no known secret.
    # (What the model itself says is its own: here it "knows" the key only because the script put it there.)
    results = [
        json.dumps(m)
        for c in fake_provider.calls()
        for m in c.body.get("messages", [])
        if isinstance(m.get("content"), list) and any(b.get("type") == "tool_result" for b in m["content"])
    ]
    assert results and not any(ATK in r or ANT in r for r in results), results
    assert any("[REDACTED]" in r for r in results)
    # Every file aictl wrote (store, evidence blobs, logs, agent state); the agent's own worktree and the
    # branch it committed are its work product, not a record.
    for secret in (ATK, ANT):
        assert _files_holding(git_project / ".ai", secret.encode(), ("workspaces",)) == []


def test_the_activity_column_is_redacted_at_the_sink(git_project):
    from aictl.config import load_settings
    from aictl.domain.redact import register
    from aictl.store import open_store
    from aictl.tasks.fence import write_activity
    from aictl.tasks.service import TaskService, TaskSpec

    register("activitysecret99")
    settings = load_settings(git_project)
    store = open_store(settings.resolved_database_url)
    svc = TaskService(store, settings)
    task = svc.create_many([TaskSpec(title="a")])[0]
    claimed = svc.claim("w", task_id=task.id)
    assert claimed is not None
    with store.write() as tx:
        assert write_activity(tx, task.id, "w", claimed.task.lease_epoch, "cat activitysecret99")
    with store.read() as tx:
        assert tx.one("SELECT activity FROM tasks WHERE id = :id", {"id": task.id})["activity"] == "cat [REDACTED]"
    store.close()


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        _Receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a: object) -> None:
        pass


def test_notifications_and_logs_carry_no_webhook_or_ai_secret(git_project, monkeypatch, tmp_path):
    from aictl import logging as alog
    from aictl.config import load_settings
    from aictl.daemon.notify import Notifier

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HOOK_SIG", HOOK)
    url = f"http://127.0.0.1:{server.server_port}/hook"
    (git_project / ".ai" / "config.yaml").write_text(
        f"notifications:\n  - type: webhook\n    url: {url}\n    secret_env: HOOK_SIG\n"
    )
    settings = load_settings(git_project)
    notifier = Notifier.from_settings(settings)
    notifier.notify("task.failed", {"task_id": 1, "reason": f"model said {HOOK} and {ANT}"})
    notifier.close()
    server.shutdown()
    assert _Receiver.bodies and all(HOOK.encode() not in b and ANT.encode() not in b for b in _Receiver.bodies)
    assert b"[REDACTED]" in _Receiver.bodies[0]

    log = tmp_path / "daemon.log"
    with log.open("w") as stream:
        alog.configure(level="debug", json=True, stream=stream)
        try:
            alog.get_logger("t").debug("run.output", line=f"{HOOK} {ANT}", extra={"k": HOOK})
        finally:
            alog.configure(level="warning", json=False, stream=sys.stderr)
    text = log.read_text()
    assert "[REDACTED]" in text and HOOK not in text and ANT not in text


def test_config_show_masks_the_database_password(git_project):
    env = {**os.environ, "AICTL_DATABASE_URL": f"postgresql://me:{DB_PASSWORD}@127.0.0.1:1/db"}
    for mode in ("table", "json"):
        out = _aictl(git_project, env, "config", "show", "-o", mode)
        assert out.returncode == 0, out.stderr
        assert DB_PASSWORD.encode() not in out.stdout + out.stderr and b"me:[REDACTED]@" in out.stdout


def test_the_database_password_is_a_known_secret(git_project, monkeypatch):
    from aictl.config import load_settings
    from aictl.domain.redact import redact_text

    monkeypatch.setenv("AICTL_DATABASE_URL", f"postgresql://me:{DB_PASSWORD}@127.0.0.1:1/db")
    load_settings(git_project)
    assert redact_text(f"printed {DB_PASSWORD}") == "printed [REDACTED]"

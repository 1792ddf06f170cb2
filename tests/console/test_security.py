"""Who may change what through the console: read-only serves no mutating route, a non-loopback bind needs a token,
a cross-site POST without the CSRF token is refused, a foreign Host is refused, and approving is policy-checked
as the console user (the token's name)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.console.conftest import start_console

TOKENS = "robot:" + "r" * 32 + ",alice@example.org:" + "a" * 32


def _parked(proc_cli, cwd) -> int:
    tid = json.loads(
        proc_cli("task", "create", "migrate", "-l", "migration", "--lock", "src/**", "--command", "true", "-o", "json",
                 cwd=cwd).stdout
    )["id"]  # fmt: skip
    assert proc_cli("task", "execute", str(tid), "--owner", "w1", cwd=cwd).returncode == 5
    return tid


def _status(proc_cli, cwd, tid: int) -> str:
    return json.loads(proc_cli("task", "get", str(tid), "-o", "json", cwd=cwd).stdout)["status"]


def _csrf(client: httpx.Client, url: str) -> str:
    page = client.get(url + "/approvals")
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_read_only_serves_no_mutating_route(console_project, console, proc_cli):
    tid = _parked(proc_cli, console_project)
    c = console(console_project, "--read-only")
    with httpx.Client() as client:
        page = client.get(c.url + "/approvals")
        assert page.status_code == 200 and f"approval-{tid}" in page.text
        assert '<form method="post"' not in page.text and "csrf" not in page.text
        for verb in ("approve", "reject"):
            refused = client.post(f"{c.url}/tasks/{tid}/{verb}", data={"csrf": "x", "comment": "no"})
            assert refused.status_code in (404, 405)
    assert _status(proc_cli, console_project, tid) == "awaiting_approval"


def test_a_cross_site_post_without_the_csrf_token_is_refused(console_project, console, proc_cli):
    tid = _parked(proc_cli, console_project)
    c = console(console_project)
    with httpx.Client() as client:
        token = _csrf(client, c.url)
        forged = client.post(f"{c.url}/tasks/{tid}/approve", data={"comment": "x"},
                             headers={"origin": "http://evil.example"})  # fmt: skip
        assert forged.status_code == 403
        no_token = client.post(f"{c.url}/tasks/{tid}/approve", data={"comment": "x"})
        assert no_token.status_code == 403
        foreign = client.post(f"{c.url}/tasks/{tid}/approve", data={"csrf": token},
                              headers={"origin": "http://evil.example"})  # fmt: skip
        assert foreign.status_code == 403
        assert _status(proc_cli, console_project, tid) == "awaiting_approval"
        own = client.post(f"{c.url}/tasks/{tid}/reject", data={"csrf": token, "comment": "not now"},
                          headers={"origin": c.url})  # fmt: skip
        assert own.status_code == 303 and "rejected" in own.headers["location"]
    assert _status(proc_cli, console_project, tid) == "failed"


def test_a_foreign_host_header_is_refused_on_loopback(console_project, console):
    c = console(console_project)
    with httpx.Client() as client:
        assert client.get(c.url + "/", headers={"host": "attacker.example:80"}).status_code == 421
        assert client.get(c.url + "/").status_code == 200


def test_a_non_loopback_bind_without_a_token_refuses_to_start(console_project, proc_cli):
    done = proc_cli("console", "--host", "0.0.0.0", "--port", "0", cwd=console_project, timeout=30)
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr and "AICTL_CONSOLE_TOKEN" in done.stderr


def test_with_a_token_every_request_needs_it_and_approvals_are_the_tokens_users(console_project, proc_cli):
    tid = _parked(proc_cli, console_project)
    c = start_console(console_project, "--host", "0.0.0.0", env={"AICTL_CONSOLE_TOKEN": TOKENS})
    try:
        url = c.url.replace("0.0.0.0", "127.0.0.1")
        with httpx.Client() as anonymous:
            assert anonymous.get(url + "/").status_code == 401
            assert anonymous.get(url + "/metrics").status_code == 401
            assert anonymous.get(url + "/login", params={"token": "wrong" * 8}).status_code == 401
        robot = httpx.Client(headers={"authorization": "Bearer " + "r" * 32})
        with robot:
            token = _csrf(robot, url)
            refused = robot.post(f"{url}/tasks/{tid}/approve", data={"csrf": token}, headers={"origin": url})
            assert refused.status_code == 303 and "refused" in refused.headers["location"]  # policy: people approve
        assert _status(proc_cli, console_project, tid) == "awaiting_approval"
        with httpx.Client(follow_redirects=True) as alice:
            login = alice.get(url + "/login", params={"token": "a" * 32})  # the browser's way: a cookie
            assert login.status_code == 200 and "alice@example.org" in login.text
            token = _csrf(alice, url)
            ok = alice.post(f"{url}/tasks/{tid}/approve", data={"csrf": token, "comment": "fine"},
                            headers={"origin": url}, follow_redirects=False)  # fmt: skip
            assert ok.status_code == 303 and "approved%20by%20alice%40example.org" in ok.headers["location"]
            assert alice.post(f"{url}/tasks/{tid}/explode", data={"csrf": token}, headers={"origin": url},
                              follow_redirects=False).status_code == 404  # fmt: skip
        assert _status(proc_cli, console_project, tid) == "queued"
        events = json.loads(proc_cli("audit", "log", "--task", str(tid), "-o", "json", cwd=console_project).stdout)
        assert [e["actor"] for e in events if e["action"] == "approve"] == ["alice@example.org"]
        decisions = json.loads(
            proc_cli("audit", "decisions", "--task", str(tid), "--action", "approve", "-o", "json",
                     cwd=console_project).stdout
        )  # fmt: skip
        assert [(d["actor"], d["effect"]) for d in decisions] == [("robot", "deny"), ("alice@example.org", "allow")]
    finally:
        c.stop()


@pytest.mark.parametrize("token", ["short", ""])
def test_a_weak_or_empty_token_is_not_a_token(console_project, proc_cli, monkeypatch, token):
    monkeypatch.setenv("AICTL_CONSOLE_TOKEN", token)
    done = proc_cli("console", "--host", "0.0.0.0", "--port", "0", cwd=console_project, timeout=30)
    assert done.returncode == 2, done.stderr


def test_outside_a_project_the_console_does_not_start(tmp_path, proc_cli):
    done = proc_cli("console", "--port", "0", cwd=tmp_path, timeout=30)
    assert done.returncode == 1 and "aictl init" in done.stderr and "aictl console:" not in done.stderr

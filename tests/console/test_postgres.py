"""The console on PostgreSQL: pages, the live stream, an approval and /metrics over a shared database store
(evidence blobs live in the database there, not on disk)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.console.conftest import APPROVAL_RULE, git, start_console


@pytest.mark.postgres
def test_console_on_postgres(tmp_path, pg_url, proc_cli):
    from prometheus_client.parser import text_string_to_metric_families

    env = {"AICTL_DATABASE_URL": pg_url, "AICTL_ACTOR": "pg-operator@test"}
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("print('old')\n")
    git(root, "init", "-q", "-b", "main")
    assert proc_cli("init", cwd=root, env=env).returncode == 0
    policy = root / ".ai" / "policy.yaml"
    policy.write_text(policy.read_text() + APPROVAL_RULE)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")

    def j(*args):
        done = proc_cli(*args, "-o", "json", cwd=root, env=env)
        assert done.returncode in (0, 5), done.stderr
        return json.loads(done.stdout)

    done_id = j("task", "create", "edit app", "--lock", "src/**", "--command", "echo new > src/app.py")["id"]
    assert proc_cli("task", "execute", str(done_id), "--owner", "w1", cwd=root, env=env).returncode == 0
    parked = j("task", "create", "migrate", "-l", "migration", "--lock", "src/**", "--command", "true")["id"]
    assert proc_cli("task", "execute", str(parked), "--owner", "w1", cwd=root, env=env).returncode == 5

    c = start_console(root, env=env)
    try:
        with httpx.Client() as client:
            page = client.get(f"{c.url}/tasks/{done_id}")
            assert page.status_code == 200 and 'class="gi"' in page.text and "+new" in page.text  # the diff, from PG
            with client.stream("GET", c.url + "/events", params={"view": "queue"}) as stream:
                first = next(line for line in stream.iter_lines() if line.startswith("data: "))
                assert 'id="counts"' in first
            inbox = client.get(c.url + "/approvals")
            token = re.search(r'name="csrf" value="([^"]+)"', inbox.text).group(1)
            ok = client.post(f"{c.url}/tasks/{parked}/approve", data={"csrf": token}, headers={"origin": c.url})
            assert ok.status_code == 303 and "approved" in ok.headers["location"]
            metrics = client.get(c.url + "/metrics").text
        assert j("task", "get", str(parked))["status"] == "queued"
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(metrics)
            for s in f.samples
        }
        assert samples[("aictl_tasks", (("status", "done"),))] == 1
        assert samples[("aictl_run_duration_seconds_count", (("connector", "command"),))] == 1
    finally:
        c.stop()

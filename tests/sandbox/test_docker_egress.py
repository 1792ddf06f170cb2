"""A docker run with an egress allow list: its own internal network, the proxy the only way out, every attempt in
the evidence, and the container, network and proxy gone after success, failure, timeout, cancel and SIGKILL.

The "API" is a server on the host's loopback; the "forbidden host" a second one on 127.0.0.2. Nothing else is
dialled (a direct attempt at either from inside has no route: the network is internal)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aictl.sandbox import SandboxSpec, get_sandbox

pytestmark = pytest.mark.docker


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def _serve(host: str):
    try:
        srv = ThreadingHTTPServer((host, 0), _Hello)
    except OSError:
        pytest.skip(f"{host} is not usable on this host")
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


@pytest.fixture
def api():
    srv = _serve("127.0.0.1")
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def forbidden():
    srv = _serve("127.0.0.2")
    yield f"127.0.0.2:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def left_behind(docker_engine):
    """Containers and networks labelled aictl.test=<tag>: what a run must not leave."""

    def find(tag: str) -> list[str]:
        api = docker_engine.api
        label = {"label": ["aictl.managed=true", f"aictl.test={tag}"]}
        return [c["Names"][0] for c in api.containers(all=True, filters=label)] + [
            n["Name"] for n in api.networks(filters=label)
        ]

    return find


def _spec(image: str, allowed: list[str], **kw) -> SandboxSpec:
    kw.setdefault("timeout_s", 60)
    return SandboxSpec(backend="docker", image=image, egress=allowed, **kw)


CODE = "curl -s -o /dev/null -w '%{http_code}' "


def test_only_the_allowed_pair_is_reachable_and_every_attempt_is_recorded(
    agents_image, api, forbidden, tag, left_behind, tmp_path
):
    seen = []
    script = (
        f"echo api=$({CODE}http://{api}/); echo forbidden=$({CODE}http://{forbidden}/); "
        f"echo tunnel=$({CODE}--proxytunnel http://{forbidden}/); "
        f"curl -s -m 3 --noproxy '*' http://{api}/ >/dev/null; echo direct=$?"
    )
    r = get_sandbox("docker").run(
        ["sh", "-c", script],
        workdir=tmp_path,
        spec=_spec(agents_image, [api], on_egress=seen.append),
        labels={"test": tag},
    )
    assert r.ok, r.stderr
    lines = dict(line.split("=", 1) for line in r.stdout.split())
    assert lines["api"] == "200" and lines["forbidden"] == "403" and lines["tunnel"] == "000"
    assert lines["direct"] != "0"  # the container's own loopback has no server and the network no route out
    assert [(a.host, a.method, a.allowed) for a in seen] == [
        ("127.0.0.1", "GET", True),
        ("127.0.0.2", "GET", False),
        ("127.0.0.2", "CONNECT", False),
    ]
    evidence = r.settings
    assert evidence["network"] == "egress-proxy" and evidence["egress_allowed"] == [api]
    assert {(a["host"], a["allowed"], a["count"]) for a in evidence["egress"]} == {
        ("127.0.0.1", True, 1),
        ("127.0.0.2", False, 2),
    }
    assert left_behind(tag) == []


@pytest.mark.parametrize("how", ["failure", "timeout", "cancel"])
def test_container_and_network_are_gone_after_a_failed_timed_out_or_cancelled_run(
    agents_image, api, tag, left_behind, tmp_path, how
):
    cancel = threading.Event()
    spec = _spec(agents_image, [api], timeout_s=2 if how == "timeout" else 60)
    if how == "cancel":
        threading.Timer(1.0, cancel.set).start()
    argv = ["sh", "-c", "exit 3"] if how == "failure" else ["sleep", "30"]
    r = get_sandbox("docker").run(argv, workdir=tmp_path, spec=spec, cancel=cancel, labels={"test": tag})
    assert {"failure": r.exit_code == 3, "timeout": r.timed_out, "cancel": r.cancelled}[how], r
    assert left_behind(tag) == []


_HOLDER = """
import json, sys
from pathlib import Path
from aictl.sandbox import SandboxSpec, get_sandbox
spec = SandboxSpec(backend="docker", image=sys.argv[1], egress=[sys.argv[2]], timeout_s=120)
get_sandbox("docker").run(["sh", "-c", "echo up > started; sleep 100"], workdir=Path(sys.argv[3]), spec=spec,
                          labels={"test": sys.argv[4], "task": "424242", "epoch": "1"})
"""


def test_a_sigkilled_owner_leaves_container_and_network_that_reclaim_removes(
    agents_image, api, tag, left_behind, tmp_path
):
    from aictl.sandbox.runs import stop_stale_runs

    ws = tmp_path / "ws"
    ws.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, agents_image, api, str(ws), tag], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (ws / "started").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert (ws / "started").exists(), "the container never started"
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no finally of the run's owner runs: its proxy thread dies with it
        proc.wait()
    assert len(left_behind(tag)) == 2  # the container and its network
    other_project = tmp_path / "elsewhere"
    other_project.mkdir()
    assert stop_stale_runs(other_project, 424242, 2) == []  # the same task id in another project is not this run
    assert len(left_behind(tag)) == 2
    stopped = stop_stale_runs(tmp_path, 424242, 2)
    assert any(s.startswith("container ") for s in stopped) and any(s.startswith("network ") for s in stopped)
    assert left_behind(tag) == []


def test_orphan_networks_of_dead_owners_are_removed_by_cleanup(docker_engine, tag, left_behind):
    from aictl.sandbox.docker import owner_labels
    from aictl.sandbox.runs import remove_orphan_networks

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    labels = {**owner_labels({"test": tag}), "aictl.owner_pid": str(dead.pid)}
    live = docker_engine.api.create_network(f"aictl-net-{tag}-live", internal=True, labels=owner_labels({"test": tag}))
    gone = docker_engine.api.create_network(f"aictl-net-{tag}-dead", internal=True, labels=labels)
    try:
        # Only this test's: on a shared engine, another test run's live networks may look orphaned from here.
        removed = remove_orphan_networks(docker_engine.api, labels=[f"aictl.test={tag}"])
        assert f"aictl-net-{tag}-dead" in removed and f"aictl-net-{tag}-live" not in removed
        assert left_behind(tag) == [f"aictl-net-{tag}-live"]
    finally:
        for net in (live, gone):
            with contextlib.suppress(Exception):
                docker_engine.api.remove_network(net["Id"])


def test_settings_are_json_and_carry_no_callback(agents_image, api, tmp_path):
    spec = _spec(agents_image, [api], on_egress=lambda a: None)
    assert "on_egress" not in spec.model_dump()
    r = get_sandbox("docker").run(["true"], workdir=tmp_path, spec=spec)
    json.dumps(r.settings)
    assert r.ok and r.settings["egress"] == []


def test_a_destination_off_the_list_is_put_to_the_decision_callback(agents_image, api, forbidden, tmp_path):
    asked = []

    def decide(host: str, port: int) -> bool:
        asked.append((host, port))
        return host == "127.0.0.2"

    script = f"echo forbidden=$({CODE}http://{forbidden}/)"
    r = get_sandbox("docker").run(
        ["sh", "-c", script], workdir=tmp_path, spec=_spec(agents_image, [api], egress_decide=decide)
    )
    assert r.ok and r.stdout.strip() == "forbidden=200", r.stderr
    assert asked == [("127.0.0.2", int(forbidden.rsplit(":", 1)[1]))]
    assert r.settings["egress"][0]["reason"] == "allowed by policy"


def test_sandbox_run_takes_an_egress_list(agents_image, api, forbidden, tmp_path, j, cli):
    script = f"echo $({CODE}http://{api}/) $({CODE}http://{forbidden}/)"
    r = j("sandbox", "run", "--image", agents_image, "--egress", api, "-w", str(tmp_path), "--", "sh", "-c", script)
    assert r["exit_code"] == 0 and r["stdout"] == "200 403\n"
    assert [(a["host"], a["allowed"]) for a in r["settings"]["egress"]] == [("127.0.0.1", True), ("127.0.0.2", False)]
    code, _, err = cli("sandbox", "run", "--egress", "no-port", "--", "true")
    assert code == 2 and "--egress" in err

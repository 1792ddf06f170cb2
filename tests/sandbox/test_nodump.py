"""A local command cannot read aictl's environment through /proc/$PPID/environ when aictl is not root.

Real processes as an unprivileged user (uid 65534): a parent holding a key runs `cat /proc/$PPID/environ`
in a child, once as it is (the control: the key is readable) and once after hide_environment()
(PR_SET_DUMPABLE=0: permission denied). As root it is no boundary; docs/execution.md says so.
The parent is the system Python running the module's file alone: the unprivileged user cannot
reach this checkout's virtualenv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import aictl.sandbox.nodump as nodump

SYSTEM_PYTHON = "/usr/bin/python3"
PARENT = """
import runpy, subprocess, sys
module = runpy.run_path(sys.argv[1])
if sys.argv[2] == "hide":
    assert module["hide_environment"]()
child = subprocess.run(["sh", "-c", "cat /proc/$PPID/environ"], capture_output=True, env={"PATH": "/usr/bin:/bin"})
sys.stdout.buffer.write(child.stdout + b"|" + child.stderr)
"""


def _as_nobody(mode: str) -> bytes:
    if os.geteuid() != 0 or not shutil.which("setpriv") or not Path(SYSTEM_PYTHON).exists():
        pytest.skip("needs root, setpriv and a system python to start an unprivileged parent")
    # The checkout (and pytest's tmp_path) may sit in a directory only root can enter, e.g. a CI clone
    # under mktemp -d: hand the unprivileged parent a copy of the module in a directory of its own.
    shared = Path(tempfile.mkdtemp(prefix="aictl-nodump-", dir="/tmp"))
    shared.chmod(0o755)
    module = shared / "nodump.py"
    module.write_text(Path(nodump.__file__).read_text())
    module.chmod(0o644)
    try:
        return _run_as_nobody(module, mode)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _run_as_nobody(module: Path, mode: str) -> bytes:
    return subprocess.run(
        [
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            SYSTEM_PYTHON,
            "-c",
            PARENT,
            str(module),
            mode,
        ],
        env={"PATH": "/usr/bin:/bin", "ATK_KEY": "plainharmlessvalue42"},
        capture_output=True,
        timeout=30,
        cwd="/",
    ).stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux")
def test_a_child_cannot_read_a_hidden_parents_environment():
    assert b"plainharmlessvalue42" in _as_nobody("show")  # the control: the hole is real
    hidden = _as_nobody("hide")
    assert b"plainharmlessvalue42" not in hidden and b"Permission denied" in hidden


def test_the_local_backend_hides_aictls_environment_before_it_runs_a_command(tmp_path):
    # In a child interpreter: a non-dumpable pytest process would outlive this test.
    script = (
        "import ctypes, pathlib, sys\n"
        "from aictl.sandbox.base import SandboxSpec\n"
        "from aictl.sandbox.local import LocalSandbox\n"
        "get = lambda: ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)\n"
        "before = get()\n"
        "r = LocalSandbox().run(['true'], workdir=pathlib.Path(sys.argv[1]), spec=SandboxSpec(backend='local'))\n"
        "print(before, get(), r.exit_code)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1", "0", "0"], out.stderr

"""The hot commands start fast because they leave heavy libraries alone: checked on the modules a real process loads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Never on these paths: ORMs, SDKs, docker, rich (help is plain click text), YAML and CEL (policy is not read).
HEAVY = ("sqlalchemy", "sqlmodel", "anthropic", "openai", "ollama", "docker", "rich", "structlog", "celpy", "httpx")
# pydantic too, except where the task service's TaskSpec (aictl/tasks/service.py) still brings it in.
NO_PYDANTIC = ("pydantic", "pydantic_core")

PROBE = """
import json, sys
from aictl.cli.main import main
code = main(sys.argv[1:])
sys.stdout.flush()
sys.stderr.write("\\nMODULES " + json.dumps(sorted({m.split(".")[0] for m in sys.modules})) + "\\n")
sys.exit(code)
"""


def loaded(project, *args: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=project, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stderr.rsplit("MODULES ", 1)[1]))


@pytest.fixture
def held(project, j):
    """A project with one task claimed by w1: (task id, epoch)."""
    t = j("task", "create", "hot")
    j("task", "create", "next")
    lease = j("task", "claim", "--owner", "w1")["lease"]
    return t["id"], lease["lease_epoch"]


def test_read_commands_and_help_load_no_pydantic_and_nothing_heavy(project, held):
    for args in (["--help"], ["task", "--help"], ["task", "get", str(held[0]), "-o", "json"],
                 ["task", "list", "-o", "json"], ["task", "list"]):
        mods = loaded(project, *args)
        assert not mods & {*HEAVY, *NO_PYDANTIC}, (args, sorted(mods & {*HEAVY, *NO_PYDANTIC}))
        assert "typer" in mods  # the probe really ran the CLI


def test_lease_and_create_commands_load_nothing_heavy(project, held):
    tid, epoch = held
    lease = ["--owner", "w1", "--epoch", str(epoch)]
    for args in (["task", "create", "x", "-o", "json"], ["task", "claim", "--owner", "w2", "-o", "json"],
                 ["task", "heartbeat", str(tid), *lease, "-o", "json"],
                 ["task", "complete", str(tid), *lease, "-o", "json"]):
        mods = loaded(project, *args)
        assert not mods & set(HEAVY), (args, sorted(mods & set(HEAVY)))

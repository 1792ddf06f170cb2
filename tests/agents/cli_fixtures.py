"""The real agent CLIs for tests: found in the pinned prefix, installed there once if missing.

Claude Code and Codex are installed from npm at pinned versions by
.ci/install-agent-clis into ~/.cache/aictl/agent-clis (AICTL_AGENT_CLIS
overrides). Without them (no Node, no network) the tests that need them skip
with the reason, except under AICTL_REQUIRE_AGENT_CLIS=1 (CI), where a
missing CLI is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / ".ci" / "install-agent-clis"
# Read at import: the autouse fixture in tests/conftest.py removes AICTL_* variables before each test.
REQUIRE = os.environ.get("AICTL_REQUIRE_AGENT_CLIS") == "1"
PREFIX = Path(os.environ.get("AICTL_AGENT_CLIS") or Path.home() / ".cache" / "aictl" / "agent-clis")
INSTALL_TIMEOUT_S = 600

_lock = threading.Lock()
_state: dict[str, Any] = {}


def _binaries() -> dict[str, Path]:
    return {name: PREFIX / "node_modules" / ".bin" / name for name in ("claude", "codex")}


def _ensure_installed() -> str | None:
    """None when both CLIs are there (installing them if need be), else why not."""
    with _lock:
        if "problem" in _state:
            return _state["problem"]
        problem = None
        if not all(p.exists() for p in _binaries().values()):
            if shutil.which("npm") is None:
                problem = "npm is not installed (apt-get install -y nodejs npm), so the agent CLIs cannot be installed"
            elif not _registry_answers():
                problem = "the npm registry does not answer (no network?), so the agent CLIs cannot be installed"
            else:
                env = {**os.environ, "AICTL_AGENT_CLIS": str(PREFIX), "CI": "true"}
                try:
                    proc = subprocess.run(
                        ["bash", str(INSTALLER)],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        text=True,
                        timeout=INSTALL_TIMEOUT_S,
                    )
                    if proc.returncode != 0:
                        problem = f"{INSTALLER.name} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
                except subprocess.TimeoutExpired:
                    problem = f"{INSTALLER.name} took over {INSTALL_TIMEOUT_S}s (no network?)"
        if problem is None and not all(p.exists() for p in _binaries().values()):
            problem = f"the agent CLIs are not in {PREFIX} after installing"
        _state["problem"] = problem
        return problem


def _registry_answers() -> bool:
    """A quick look before a download that would otherwise wait out npm's own retries."""
    try:
        return (
            subprocess.run(
                ["npm", "ping", "--fetch-timeout=10000", "--fetch-retries=0"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def need_cli(name: str) -> str:
    problem = _ensure_installed()
    if problem is not None:
        message = f"real {name} CLI unavailable: {problem}; install with: bash .ci/install-agent-clis"
        if REQUIRE:
            pytest.fail(message + " (AICTL_REQUIRE_AGENT_CLIS=1)")
        pytest.skip(message)
    return str(_binaries()[name])


@pytest.fixture(scope="session")
def claude_bin() -> str:
    return need_cli("claude")


@pytest.fixture(scope="session")
def codex_bin() -> str:
    return need_cli("codex")


def make_ai(connector: str, binary: str, fp: Any, *, model: str, key_env: str, **config: Any) -> Any:
    from aictl.domain.models import AIRecord

    return AIRecord(
        id=f"{connector}-test",
        connector=connector,
        model=model,
        config={"binary": binary, "base_url": fp.url, "api_key_env": key_env, "max_retries": 0, **config},
    )


def make_ctx(
    workdir: Path,
    ai: Any,
    *,
    state_dir: Path | None,
    prompt: str,
    system: str = "",
    allowed_tools: list[str] | None = None,
    timeout_s: float = 120.0,
    resume: str | None = None,
    events: list | None = None,
    cancel: threading.Event | None = None,
    **kw: Any,
) -> Any:
    from aictl.agents.connectors.base import RunContext
    from aictl.sandbox.base import SandboxSpec
    from aictl.sandbox.local import LocalSandbox

    ctx = RunContext(
        task=None,
        workdir=workdir,
        sandbox=LocalSandbox(),
        spec=SandboxSpec(timeout_s=timeout_s),
        ai=ai,
        prompt=prompt,
        system=system,
        allowed_tools=allowed_tools,
        resume_session=resume,
        state_dir=state_dir,
        on_event=(events.append if events is not None else None),
        **kw,
    )
    if cancel is not None:
        ctx.cancel = cancel
    return ctx


def processes_in(directory: Path) -> list[int]:
    """Pids of live processes whose working directory is `directory` (what a killed CLI must not leave)."""
    target = os.path.realpath(directory)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/cwd") == target:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        pids.append(int(entry))
        except OSError:
            continue
    return pids


# -- whole-CLI runs: aictl ai register + aictl task execute --ai ------------------------------------------------------


def cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    from aictl.cli.main import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: Any, *args: str) -> Any:
    import json

    code, out, err = cli(capsys, *args, "-o", "json")
    assert code == 0, err
    return json.loads(out)


def execute(capsys: Any, *args: str) -> tuple[int, dict, str]:
    """`aictl task execute … -o json`: the exit code, the final report, stderr."""
    import json

    code, out, err = cli(capsys, "task", "execute", *args, "-o", "json")
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    return code, next(x for x in lines if x.get("type") == "report"), err


def evidence_of(capsys: Any, task_id: int) -> dict[str, str]:
    """The task's evidence contents by kind (the latest of each)."""
    refs = cli_json(capsys, "task", "evidence", str(task_id))
    return {e["kind"]: cli(capsys, "audit", "evidence", e["digest"])[1] for e in refs}

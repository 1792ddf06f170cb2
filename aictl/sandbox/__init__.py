"""Sandbox backends: run one process for an agent inside a task's workspace.

    local   a child process in the workspace with a clean environment and a hard
            timeout; NOT isolated (RunResult.sandboxed is False)
    docker  a throwaway container: only the workspace is writable, no network,
            no capabilities, limits on CPU, memory and processes

The docker SDK is imported only when the docker backend runs.
"""

from aictl.sandbox.backends import get_sandbox
from aictl.sandbox.base import RunResult, Sandbox, SandboxError, SandboxSpec

__all__ = ["RunResult", "Sandbox", "SandboxError", "SandboxSpec", "get_sandbox"]

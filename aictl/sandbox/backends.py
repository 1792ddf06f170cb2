"""The sandbox backends by name: `get_sandbox("local" | "docker")`.

Apart from base.py because the backends import base; importing either never imports the docker SDK.
"""

from __future__ import annotations

from aictl.domain.errors import UsageError
from aictl.sandbox.base import Sandbox
from aictl.sandbox.docker import DockerSandbox
from aictl.sandbox.local import LocalSandbox


def get_sandbox(backend: str) -> Sandbox:
    """The backend named by SandboxSpec.backend."""
    if backend == "local":
        return LocalSandbox()
    if backend == "docker":
        return DockerSandbox()
    raise UsageError(f"unknown sandbox backend {backend!r}", hint="use one of: local, docker")

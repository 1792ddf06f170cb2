"""What an agent CLI (claude-code, codex) needs to run inside the docker backend instead of on this machine.

`container_spec` turns the run's sandbox spec into the one the CLI runs under:

    image    the agents image (sandbox build --preset agents) unless the config names another than the default
    mount    the worktree at its own host path (not /workspace), the working directory
    mounts   the run's state dir, read-write at its own path (sessions for --resume, CODEX_HOME, …;
             cli_common.StateDir adds it); a worktree's git metadata (the repository's common dir)
             read-only at its own path, so the worktree's `.git` file resolves and `git status`/`git diff`
             work inside; the collector commits on the host as ever
    egress   the AI's own API base URL's host:port, plus whatever the spec already allows, through the
             per-run egress proxy (aictl/sandbox/egressnet.py): nothing else is reachable
    env      git told to trust the mounted repository (the container user does not own it) and to take
             no optional locks on it (it is read-only)

The API key stays an environment variable of the CLI's process (spec.env), never a file.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from aictl.agents.connectors.base import RunContext
from aictl.sandbox.base import BindMount, SandboxSpec

# The host:port a CLI talks to when its AI names no base_url.
DEFAULT_API = {"claude-code": "https://api.anthropic.com", "codex": "https://api.openai.com/v1"}
GIT_ENV = {
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "safe.directory",
    "GIT_CONFIG_VALUE_0": "*",
    "GIT_OPTIONAL_LOCKS": "0",
}


def api_hostport(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def git_common_dir(workdir: Path) -> Path | None:
    """The repository directory a worktree's `.git` file points into (its commondir), or None when not a worktree."""
    dotgit = Path(workdir) / ".git"
    if not dotgit.is_file():
        return None
    text = dotgit.read_text(errors="replace").strip()
    if not text.startswith("gitdir:"):
        return None
    gitdir = (Path(workdir) / text[len("gitdir:") :].strip()).resolve()
    common = gitdir / "commondir"
    if common.is_file():
        return (gitdir / common.read_text().strip()).resolve()
    return gitdir


def container_spec(ctx: RunContext, spec: SandboxSpec) -> SandboxSpec:
    """`spec` for the AI's CLI inside docker (the state dir is already among spec.mounts: cli_common.StateDir)."""
    from aictl.agents.connectors.spec import spec_for
    from aictl.sandbox.agents_image import AGENTS_IMAGE
    from aictl.sandbox.image import DEFAULT_IMAGE

    assert ctx.ai is not None
    connector = spec_for(ctx.ai.connector)
    mounts = list(spec.mounts)
    common = git_common_dir(ctx.workdir)
    if common is not None:
        mounts.append(BindMount(source=str(common), target=str(common), read_only=True))
    api = api_hostport(connector.base_url(ctx.ai) or DEFAULT_API[connector.name])
    return spec.model_copy(
        update={
            "image": AGENTS_IMAGE if spec.image == DEFAULT_IMAGE else spec.image,
            # The worktree at its host path: the CLI's paths (its sessions' names, its tool calls, the policy's
            # checks of them) are the same inside and out.
            "mount": str(Path(ctx.workdir).resolve()),
            "mounts": mounts,
            "egress": list(dict.fromkeys([*(spec.egress or []), api])),
            "env": {**spec.env, **GIT_ENV},
        }
    )


__all__ = ["DEFAULT_API", "api_hostport", "container_spec", "git_common_dir"]

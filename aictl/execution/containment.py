"""What the run's policy takes away from its sandbox before the agent starts: the network, and the secrets.

`contain(spec, workdir, run_policy)` gives the spec the connector runs with:

- network: on only when config asks for it (sandbox_network) *and* the policy allows
  `network` for the run (one recorded decision, asked without a host: a rule that allows
  only some hosts does not open the whole network; a policy deny always wins over config).
  Every backend gets it: the docker backend's container network and the agent CLIs' own
  web/network settings (claude-code's web tools, codex's sandbox network) read spec.network.
- masked_paths (docker backend): every workspace file whose `read_path` the policy denies,
  found by a bounded walk (symlinks not followed) and evaluated without a record per file,
  so docker mounts an empty read-only file over each. A workspace too big to walk fails
  the run before it starts: an unwalked secret is an unmasked one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aictl.sandbox.base import SandboxError

if TYPE_CHECKING:
    from aictl.policy.runtime import RunPolicy
    from aictl.sandbox.base import SandboxSpec

# Entries walked in one workspace before masking gives up (and the run with it).
MAX_WALK = 200_000
# Files masked in one run; past it the engine's mount table becomes the problem.
MAX_MASKED = 2_000


class WorkspaceTooLarge(SandboxError):
    code = "workspace_too_large"


def denied_reads(workdir: Path, read_denied: Callable[[str], bool]) -> list[str]:
    """Repo-relative paths of the workspace's regular files that `read_denied` says no to, sorted."""
    root = str(workdir)
    found: list[str] = []
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        seen += len(dirnames) + len(filenames)
        if seen > MAX_WALK:
            raise WorkspaceTooLarge(
                f"the workspace has over {MAX_WALK} entries: too many to find the files the policy forbids reading",
                hint="run this task with the local backend, or split the repository",
            )
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and not os.path.islink(full) and read_denied(rel):
                found.append(rel)
    if len(found) > MAX_MASKED:
        raise WorkspaceTooLarge(
            f"{len(found)} workspace files are denied to read: over the {MAX_MASKED} the docker backend masks",
            hint="narrow the policy's read_path deny rules, or keep such files out of the repository",
        )
    return found


def read_denied_by(run_policy: RunPolicy) -> Callable[[str], bool]:
    """Whether the run's policy refuses `read_path` on a repo-relative path, asked without a record
    (a walk of the workspace is no agent action; the agent's own reads are decided and recorded)."""
    from aictl.policy.gate import GateRequest, GateResource, GateSubject

    subject = GateSubject(
        ai=run_policy.ai_id,
        ai_labels=list(run_policy.ai_labels),
        task_id=run_policy.task_id,
        lease_epoch=run_policy.epoch,
        actor=run_policy.actor,
    )

    def denied(rel: str) -> bool:
        request = GateRequest(
            subject=subject, action="read_path", resource=GateResource(task=run_policy.task, path=rel), context={}
        )
        return not run_policy.gate.evaluate(request).allowed  # require_approval too: nobody approves mid-run

    return denied


def contain(spec: SandboxSpec, workdir: Path, run_policy: RunPolicy) -> SandboxSpec:
    """The spec with the policy's network decision (recorded) and, for docker, the masked files applied."""
    update: dict[str, Any] = {}
    if spec.network and not run_policy.decide("network").allowed:
        update["network"] = False
    if spec.backend == "docker":
        update["masked_paths"] = denied_reads(workdir, read_denied_by(run_policy))
    return spec.model_copy(update=update)


__all__ = ["MAX_MASKED", "MAX_WALK", "WorkspaceTooLarge", "contain", "denied_reads", "read_denied_by"]

"""Which policy files apply to a project, in hierarchy order. No parsing here, so the fast gate can use it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from aictl.domain.errors import ConfigError, UsageError

FileLevel = Literal["global", "project"]  # where a policy file sits in the hierarchy (per-AI files apart)

_SAFE_AI_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]*$")


def default_global_policy_path() -> Path:
    """$AICTL_CONFIG_DIR/policy.yaml, else $XDG_CONFIG_HOME/aictl/policy.yaml, else ~/.config/aictl/policy.yaml."""
    if os.environ.get("AICTL_CONFIG_DIR"):
        return Path(os.environ["AICTL_CONFIG_DIR"]) / "policy.yaml"
    if os.environ.get("XDG_CONFIG_HOME"):
        return Path(os.environ["XDG_CONFIG_HOME"]) / "aictl" / "policy.yaml"
    return Path.home() / ".config" / "aictl" / "policy.yaml"


def policy_files(
    project_dir: Path, *, global_path: str | Path | None = None, ai_id: str | None = None
) -> tuple[list[tuple[Path, FileLevel]], list[Path]]:
    """(global and project files with their level, per-AI files): the files that exist, in merge order.

    With `ai_id` only that AI's per-AI file is listed, else every per-AI file.
    """
    if ai_id is not None and not _SAFE_AI_ID.match(ai_id):
        raise UsageError(f"invalid AI id {ai_id!r}: use letters, digits and _.@:+-")
    candidates: list[tuple[Path, FileLevel]] = []
    global_file = Path(global_path) if global_path is not None else default_global_policy_path()
    if global_path is not None and not global_file.is_file():
        raise ConfigError(
            f"global policy file {global_file} does not exist",
            hint="create it, or leave out global_path to use the user config dir",
        )
    if global_file.is_file():
        candidates.append((global_file, "global"))
    project_file = project_dir / ".ai" / "policy.yaml"
    if project_file.is_file():
        candidates.append((project_file, "project"))
    ai_dir = project_dir / ".ai" / "policies" / "ai"
    if ai_id is not None:
        ai_candidates = [ai_dir / f"{ai_id}.yaml"] if (ai_dir / f"{ai_id}.yaml").is_file() else []
    else:
        ai_candidates = sorted(ai_dir.glob("*.yaml")) if ai_dir.is_dir() else []
    return candidates, ai_candidates


OVERLAY_LABEL = "policy-overlay:"  # a workflow step's task carries OVERLAY_LABEL + the overlay's name
_SAFE_OVERLAY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def overlay_dir(project_dir: Path) -> Path:
    """Where workflow policy overlays live: <project>/.ai/policies/workflows/<name>.yaml."""
    return project_dir / ".ai" / "policies" / "workflows"


def overlay_path(project_dir: Path, name: str) -> Path:
    """The overlay file a workflow's `policy: NAME` names."""
    return overlay_dir(project_dir) / f"{name}.yaml"


def overlay_files(project_dir: Path) -> list[Path]:
    """Every workflow policy overlay file, in name order (they are merged after the per-AI files)."""
    directory = overlay_dir(project_dir)
    return sorted(directory.glob("*.yaml")) if directory.is_dir() else []


def valid_overlay_name(name: str) -> bool:
    return bool(_SAFE_OVERLAY.match(name))


def key_line(path: Path, key: str) -> int | None:
    """The line of a top-level key in a YAML file, for a problem the schema cannot place (no YAML parsing here)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    pattern = re.compile(rf"^['\"]?{re.escape(key)}['\"]?\s*:")
    return next((n for n, line in enumerate(lines, 1) if pattern.match(line)), None)

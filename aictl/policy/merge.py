"""The policy hierarchy: global → project → per-AI, merged into one EffectivePolicy.

Layers, in order (later layers override earlier ones, rule by rule id):

1. the global file's top-level rules    (user config dir, optional)
2. the project file's top-level rules   (<project>/.ai/policy.yaml, optional)
3. the global file's `ai:` sections      (scoped: apply only to AIs matching the section key)
4. the project file's `ai:` sections
5. per-AI files <project>/.ai/policies/ai/<ai_id>.yaml (scoped to that AI)
6. workflow overlays <project>/.ai/policies/workflows/<name>.yaml (scoped to tasks labelled
   `policy-overlay:<name>`, which a workflow naming `policy: <name>` puts on its step tasks)

Which scoped layers apply depends on the AI making the request, so the merged rule list is
resolved per AI id (and cached). A final rule may only be replaced by a stricter one.

An overlay only tightens: it cannot set a default or have `ai:` sections; its deny and
require_approval rules apply as written to its tasks, and its allow rules only add limits (the
stricter of each, like any matched rule's) without granting anything. Its rule ids are namespaced
(`<name>/<id>`), so it never replaces a rule of the levels above.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, PrivateAttr

from aictl.policy.loader import PolicyIssue, issues_error, load_model_file
from aictl.policy.resolve import ResolvedPolicy, resolve_layers
from aictl.policy.schema import Effect, PolicyFile, PolicySource, Rule
from aictl.policy.sources import (
    OVERLAY_LABEL,
    FileLevel,
    default_global_policy_path,
    key_line,
    overlay_files,
    policy_files,
    valid_overlay_name,
)

# Moved to resolve.py and sources.py (free of pydantic, for the fast gate); importers still find them here.
__all__ = [
    "EffectivePolicy",
    "FileLevel",
    "PolicyLayer",
    "ResolvedPolicy",
    "default_global_policy_path",
    "load_effective_policy",
    "merge_policies",
]


class PolicyLayer(BaseModel):
    source: str
    level: Literal["global", "project", "ai", "workflow"]
    scope: str | None = None  # an fnmatch glob on the AI id; None applies to every AI
    overlay: str | None = None  # a workflow overlay's task label: its rules apply only to tasks carrying it
    default: Effect | None = None
    default_final: bool = False
    rules: list[Rule]


class EffectivePolicy(BaseModel):
    """All layers of the hierarchy, and the files they came from (path + sha256, for decision records)."""

    layers: list[PolicyLayer]
    sources: list[PolicySource]
    ai_id: str | None = None

    _resolved: dict[str | None, ResolvedPolicy] = PrivateAttr(default_factory=dict)

    def resolve(self, ai: str | None) -> ResolvedPolicy:
        """The rules that apply to requests from `ai`. Never raises: a conflict found only here keeps
        the final rule and records a warning (load time already rejected every conflict it could see)."""
        private = self.__pydantic_private__
        assert private is not None  # the model declares private attributes
        cache = private["_resolved"]  # direct: pydantic's private-attribute lookup costs ~2 us
        resolved = cache.get(ai)
        if resolved is None:

            def applies(scope: str) -> bool:
                return ai is not None and fnmatchcase(ai, scope)

            resolved, _ = _resolve(self.layers, ai, applies)
            if len(cache) > 512:
                cache.clear()
            cache[ai] = resolved
        return resolved

    @property
    def default(self) -> Effect:
        return self.resolve(self.ai_id).default

    @property
    def rules(self) -> list[Rule]:
        return [compiled.rule for compiled in self.resolve(self.ai_id).rules]


def merge_policies(
    files: Sequence[PolicyFile],
    *,
    ai_files: Mapping[str, PolicyFile] | None = None,
    ai_id: str | None = None,
    levels: Sequence[FileLevel] | None = None,
    overlays: Mapping[str, PolicyFile] | None = None,
) -> EffectivePolicy:
    """Merge already loaded files (in hierarchy order), per-AI files and workflow overlays (checked by
    `overlay_issues`); raises ConfigError on a conflict."""
    levels = list(levels) if levels is not None else ["project"] * len(files)
    layers: list[PolicyLayer] = []
    for policy, level in zip(files, levels, strict=True):
        layers.append(
            PolicyLayer(
                source=_path(policy),
                level=level,
                default=policy.default,
                default_final=policy.default_final,
                rules=policy.rules,
            )
        )
    for policy in files:
        for pattern, section in policy.ai.items():
            layers.append(
                PolicyLayer(
                    source=_path(policy),
                    level="ai",
                    scope=pattern,
                    default=section.default,
                    default_final=section.default_final,
                    rules=section.rules,
                )
            )
    for ai, policy in (ai_files or {}).items():
        layers.append(
            PolicyLayer(
                source=_path(policy),
                level="ai",
                scope=_escape_glob(ai),
                default=policy.default,
                default_final=policy.default_final,
                rules=policy.rules,
            )
        )
    for name, policy in (overlays or {}).items():
        layers.append(
            PolicyLayer(
                source=_path(policy),
                level="workflow",
                overlay=OVERLAY_LABEL + name,
                rules=[rule.model_copy(update={"id": f"{name}/{rule.id}"}) for rule in policy.rules],
            )
        )
    every = [*files, *(ai_files or {}).values(), *(overlays or {}).values()]
    sources = [p.source for p in every if p.source is not None]
    effective = EffectivePolicy(layers=layers, sources=sources, ai_id=ai_id)
    _check_conflicts(effective)
    return effective


def load_effective_policy(
    project_dir: str | Path,
    *,
    global_path: str | Path | None = None,
    ai_id: str | None = None,
) -> EffectivePolicy:
    """Load global → project → per-AI policy files; missing files are skipped, invalid ones raise ConfigError.

    `global_path=None` looks in the user config dir (see `default_global_policy_path`). With `ai_id`,
    only that AI's per-AI file is read and its merged rules are checked now; without it every
    per-AI file is read and each AI's rules are picked at evaluation time.
    """
    candidates, ai_candidates = policy_files(Path(project_dir), global_path=global_path, ai_id=ai_id)

    issues: list[PolicyIssue] = []
    loaded: list[PolicyFile] = []
    for path, _level in candidates:
        policy, found = _load(path)
        issues += found
        if policy is not None:
            loaded.append(policy)
    ai_files = load_ai_files(ai_candidates, issues)
    overlays = load_overlays(overlay_files(Path(project_dir)), issues)
    if issues:
        files = sorted({issue.file for issue in issues})
        raise issues_error(", ".join(files), issues, what="policy files" if len(files) > 1 else "policy file")
    levels = [level for _, level in candidates]
    return merge_policies(loaded, ai_files=ai_files, ai_id=ai_id, levels=levels, overlays=overlays)


def load_ai_files(paths: Sequence[Path], issues: list[PolicyIssue]) -> dict[str, PolicyFile]:
    """Per-AI files by AI id; their problems are added to `issues`."""
    ai_files: dict[str, PolicyFile] = {}
    for path in paths:
        policy, found = _load(path)
        issues += found
        if policy is not None and policy.ai:
            issues.append(
                PolicyIssue(
                    file=str(path),
                    line=key_line(path, "ai"),
                    message="a per-AI file cannot have an 'ai:' section; write its rules at the top level",
                )
            )
        elif policy is not None:
            ai_files[path.stem] = policy
    return ai_files


def load_overlays(paths: Sequence[Path], issues: list[PolicyIssue]) -> dict[str, PolicyFile]:
    """Workflow overlays by name; their problems (a loosening included) are added to `issues`."""
    overlays: dict[str, PolicyFile] = {}
    for path in paths:
        policy, found = _load(path)
        issues += found
        if policy is None:
            continue
        problems = overlay_issues(path, policy)
        issues += problems
        if not problems:
            overlays[path.stem] = policy
    return overlays


def overlay_issues(path: Path, policy: PolicyFile) -> list[PolicyIssue]:
    """What makes `policy` unfit as a workflow overlay: anything that could loosen the levels above."""
    found: list[PolicyIssue] = []
    if not valid_overlay_name(path.stem):
        found.append(
            PolicyIssue(file=str(path), message=f"overlay name {path.stem!r}: use letters, digits and _.- in the name")
        )
    for key, present in (("default", policy.default is not None), ("default_final", policy.default_final)):
        if present:
            found.append(
                PolicyIssue(
                    file=str(path),
                    line=key_line(path, key),
                    message=f"a workflow overlay only tightens and cannot set '{key}'; the project's default applies",
                )
            )
    if policy.ai:
        found.append(
            PolicyIssue(
                file=str(path),
                line=key_line(path, "ai"),
                message="a workflow overlay cannot have 'ai:' sections; scope a rule with match.ai instead",
            )
        )
    for rule in policy.rules:
        if rule.effect is Effect.allow and rule.limits is None:
            found.append(
                PolicyIssue(
                    file=str(path),
                    line=rule.line,
                    rule_id=rule.id,
                    message=(
                        "an allow rule in a workflow overlay grants nothing (an overlay only tightens); "
                        "give it limits to cap its tasks, or use deny or require_approval"
                    ),
                )
            )
    return found


def _load(path: Path) -> tuple[PolicyFile | None, list[PolicyIssue]]:
    return load_model_file(path, PolicyFile)


def _path(policy: PolicyFile) -> str:
    return policy.source.path if policy.source is not None else "<memory>"


def _escape_glob(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _covers(ai_scope: str) -> Callable[[str], bool]:
    """Whether a layer's scope applies to the AIs that `ai_scope` stands for (the same glob or one matching it)."""
    return lambda scope: scope == ai_scope or fnmatchcase(ai_scope, scope)


def _check_conflicts(policy: EffectivePolicy) -> None:
    """Resolve for every AI the layers name (and for no AI), and raise on any final-rule or default conflict."""
    scopes = list(dict.fromkeys(layer.scope for layer in policy.layers if layer.scope is not None))
    # A glob scope stands for the AIs it matches: it picks up every layer whose glob matches it too.
    probes: list[tuple[str | None, Callable[[str], bool]]] = [(None, lambda scope: False)]
    probes += [(s, _covers(s)) for s in scopes]
    if policy.ai_id is not None:
        probes.append((policy.ai_id, lambda scope: fnmatchcase(policy.ai_id or "", scope)))
    issues: list[PolicyIssue] = []
    for ai, applies in probes:
        _, found = _resolve(policy.layers, ai, applies)
        issues += [issue for issue in found if issue not in issues]
    if issues:
        files = sorted({issue.file for issue in issues})
        raise issues_error(", ".join(files), issues, what="policy hierarchy")


def _resolve(
    layers: list[PolicyLayer], ai: str | None, applies: Callable[[str], bool]
) -> tuple[ResolvedPolicy, list[PolicyIssue]]:
    resolved, problems = resolve_layers(layers, ai, applies)
    issues = [
        PolicyIssue(file=file, line=line, message=message, rule_id=rule_id) for file, line, message, rule_id in problems
    ]
    return resolved, issues

"""The effective policy as plain dataclasses, and its cache in the project's state dir.

Enforcement (the task plane's claim/complete, the executor) runs in short CLI processes: the
pydantic schema, YAML, pathspec and CEL cost ~0.3-0.5 s to import. So the merged, validated
policy is compiled into the dataclasses below and stored as `.ai/cache/policy-<key>.json`,
keyed by the sha256 of every source file's bytes and aictl's version. A hit reads only JSON;
a miss (or a cache whose sources, key or body digest do not match) loads through the schema
exactly as `load_effective_policy` does (same errors) and rewrites the cache atomically.
The body digest catches a corrupt or hand-edited cache, not a forger: the state dir is trusted
as much as the policy files beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aictl import __version__
from aictl.policy.paths import seed_paths
from aictl.policy.resolve import ResolvedPolicy, resolve_layers
from aictl.policy.sources import overlay_files, policy_files
from aictl.policy.vocab import Effect

if TYPE_CHECKING:
    from aictl.policy.merge import EffectivePolicy

FORMAT = 3  # bump when the cached shape changes
_MATCH_FIELDS = ("ai", "ai_labels", "actions", "paths", "commands", "programs", "task_labels", "task_types")


@dataclass(frozen=True, slots=True)
class PlainMatch:
    ai: list[str] | None = None
    ai_labels: list[str] | None = None
    actions: list[str] | None = None
    paths: list[str] | None = None
    commands: list[str] | None = None
    programs: list[str] | None = None
    task_labels: list[str] | None = None
    task_types: list[str] | None = None


@dataclass(frozen=True, slots=True)
class PlainSandbox:
    backend: str | None = None
    network: bool | None = None
    memory_mb: int | None = None


@dataclass(frozen=True, slots=True)
class PlainLimits:
    max_cost_usd: float | None = None
    max_runtime_s: float | None = None
    max_attempts: int | None = None
    allowed_tools: list[str] | None = None
    require_evidence: list[str] | None = None
    sandbox: PlainSandbox | None = None


@dataclass(frozen=True, slots=True)
class PlainRule:
    """A validated `schema.Rule` with the attributes matching and resolving read."""

    id: str
    effect: Effect
    final: bool = False
    match: PlainMatch = field(default_factory=PlainMatch)
    when: str | None = None
    limits: PlainLimits | None = None
    reason: str | None = None
    description: str | None = None
    source: str | None = None
    line: int | None = None

    @property
    def location(self) -> str:
        if self.source is None:
            return "<unknown>"
        return f"{self.source}:{self.line}" if self.line else self.source

    def as_final(self) -> PlainRule:
        return dataclasses.replace(self, final=True)

    def display_reason(self) -> str:
        return self.reason or self.description or f"rule {self.id} ({self.effect.value})"


@dataclass(frozen=True, slots=True)
class PlainLayer:
    source: str
    level: str
    scope: str | None
    default: Effect | None
    default_final: bool
    rules: list[PlainRule]
    overlay: str | None = None  # a workflow overlay's task label


class CompiledPolicy:
    """What enforcement needs of an EffectivePolicy: its layers (plain) and sources; resolved per AI id."""

    def __init__(self, layers: list[PlainLayer], sources: list[dict[str, str]]):
        self.layers = layers
        self.sources = sources
        self._resolved: dict[str | None, ResolvedPolicy] = {}

    def resolve(self, ai: str | None) -> ResolvedPolicy:
        """As EffectivePolicy.resolve: never raises; a conflict found only here keeps the final rule, with a warning."""
        resolved = self._resolved.get(ai)
        if resolved is None:
            resolved, _ = resolve_layers(self.layers, ai, lambda scope: ai is not None and fnmatchcase(ai, scope))
            if len(self._resolved) > 512:
                self._resolved.clear()
            self._resolved[ai] = resolved
        return resolved


# -- from the schema, to JSON and back ---------------------------------------------------------------


def compile_policy(policy: EffectivePolicy) -> tuple[CompiledPolicy, dict[str, Any]]:
    """The plain policy and its JSON form (path matchers' regexes included, so a hit needs no pathspec)."""
    from aictl.policy.paths import compile_paths

    layers, path_regexes = [], {}
    for layer in policy.layers:
        rules = []
        for rule in layer.rules:
            data = rule.model_dump(mode="json")
            data.update(source=rule.source, line=rule.line)
            rules.append(data)
            if rule.match.paths is not None:
                path_regexes[json.dumps(rule.match.paths)] = compile_paths(tuple(rule.match.paths)).regexes
        default = layer.default.value if layer.default is not None else None
        layers.append(
            {
                "source": layer.source,
                "level": layer.level,
                "scope": layer.scope,
                "default": default,
                "default_final": layer.default_final,
                "rules": rules,
                "overlay": layer.overlay,
            }
        )
    body = {
        "layers": layers,
        "sources": [{"path": s.path, "sha256": s.sha256} for s in policy.sources],
        "path_regexes": path_regexes,
    }
    return from_json(body), body


def from_json(body: dict[str, Any]) -> CompiledPolicy:
    for patterns, regexes in body["path_regexes"].items():
        seed_paths(tuple(json.loads(patterns)), [(bool(inc), str(rx)) for inc, rx in regexes])
    layers = [
        PlainLayer(
            source=layer["source"],
            level=layer["level"],
            scope=layer["scope"],
            default=Effect(layer["default"]) if layer["default"] is not None else None,
            default_final=layer["default_final"],
            rules=[_rule(r) for r in layer["rules"]],
            overlay=layer.get("overlay"),
        )
        for layer in body["layers"]
    ]
    return CompiledPolicy(layers, [dict(s) for s in body["sources"]])


def _rule(data: dict[str, Any]) -> PlainRule:
    limits = data.get("limits")
    if limits is not None:
        box = limits.get("sandbox")
        limits = PlainLimits(**{**limits, "sandbox": PlainSandbox(**box) if box is not None else None})
    match = data.get("match") or {}
    return PlainRule(
        id=data["id"],
        effect=Effect(data["effect"]),
        final=data["final"],
        match=PlainMatch(**{name: match.get(name) for name in _MATCH_FIELDS}),
        when=data.get("when"),
        limits=limits,
        reason=data.get("reason"),
        description=data.get("description"),
        source=data.get("source"),
        line=data.get("line"),
    )


# -- the cache ------------------------------------------------------------------------------------------


def load_compiled(project_dir: str | Path, *, cache_dir: Path | None = None) -> CompiledPolicy:
    """The project's effective policy (every per-AI file and workflow overlay included), from the cache
    when its sources are unchanged.

    Raises exactly what `load_effective_policy` raises for a bad file. An empty policy has no sources.
    """
    project_dir = Path(project_dir)
    candidates, ai_candidates = policy_files(project_dir)
    overlays = overlay_files(project_dir)
    sources = []
    for path in [p for p, _ in candidates] + ai_candidates + overlays:
        try:
            raw = path.read_bytes()
        except OSError:
            return _rebuild(project_dir, None)  # the loader reports the unreadable file as today
        sources.append({"path": str(path), "sha256": hashlib.sha256(raw).hexdigest()})
    if not sources:
        return CompiledPolicy([], [])
    levels = [level for _, level in candidates] + ["ai"] * len(ai_candidates) + ["workflow"] * len(overlays)
    key = hashlib.sha256(json.dumps([FORMAT, __version__, sources, levels]).encode()).hexdigest()
    cache = (cache_dir or project_dir / ".ai" / "cache") / f"policy-{key[:32]}.json"
    cached = _read(cache, key, sources)
    if cached is not None:
        return cached
    return _rebuild(project_dir, cache, key)


def _read(cache: Path, key: str, sources: list[dict[str, str]]) -> CompiledPolicy | None:
    """The cached policy, or None when it is missing, corrupt, or made from other files than the ones read now."""
    try:
        stored = json.loads(cache.read_bytes())
        body = stored["body"]
        if stored["key"] != key or body["sources"] != sources or stored["digest"] != _digest(body):
            return None
        return from_json(body)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _rebuild(project_dir: Path, cache: Path | None, key: str = "") -> CompiledPolicy:
    from aictl.policy.merge import load_effective_policy

    compiled, body = compile_policy(load_effective_policy(project_dir))
    if cache is not None:
        _write(cache, {"key": key, "digest": _digest(body), "body": body})
        for old in cache.parent.glob("policy-*.json"):  # made from files that have changed since
            if old != cache:
                old.unlink(missing_ok=True)
    return compiled


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _write(cache: Path, data: dict[str, Any]) -> None:
    """tmp file + os.replace: a reader sees the old file or the whole new one. A read-only state dir just misses."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        ignore = cache.parent / ".gitignore"
        if not ignore.exists():  # git then hides the cache in any repository, whatever its own .gitignore says
            ignore.write_text("*\n", encoding="utf-8")
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".policy-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, separators=(",", ":"))
            os.replace(tmp, cache)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return

"""The policy file format (`.ai/policy.yaml`), version 1, as pydantic models.

Every model forbids unknown keys, so a typo is an error instead of a rule that
silently never matches. `export_json_schema()` is the source of
docs/policy.schema.json (regenerate: `python -c "from aictl.policy import write_json_schema; write_json_schema()"`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from aictl.policy.conditions import condition_error
from aictl.policy.paths import compile_paths

# The fixed words live in vocab.py (free of pydantic, for the fast gate); importers still find them here.
from aictl.policy.vocab import KNOWN_ACTIONS, SUPPORTED_VERSIONS, Effect

_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")


def _check_action(name: str) -> str:
    if name not in KNOWN_ACTIONS:
        raise ValueError(f"unknown action {name!r}; known actions: {', '.join(KNOWN_ACTIONS)}")
    return name


def _check_version(version: int) -> int:
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        raise ValueError(f"unsupported policy version {version}; supported versions: {supported}")
    return version


def _check_condition(expression: str) -> str:
    problem = condition_error(expression)
    if problem:
        raise ValueError(problem)
    return expression


Action = Annotated[str, AfterValidator(_check_action)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Match(_Strict):
    """What a rule applies to. Every field given must match; an absent field matches anything."""

    ai: list[NonEmptyStr] | None = Field(None, description="fnmatch globs on the AI id, e.g. 'claude-*'")
    ai_labels: list[NonEmptyStr] | None = Field(None, description="the AI must carry all of these labels")
    actions: list[Action] | None = Field(None, description="the action must be one of these")
    paths: list[NonEmptyStr] | None = Field(
        None, description="gitignore-style patterns; matches if any resource path matches"
    )
    commands: list[NonEmptyStr] | None = Field(
        None, description="fnmatch globs on resource.command: the whole line or any simple command in it"
    )
    programs: list[NonEmptyStr] | None = Field(
        None,
        description="fnmatch globs on the command's parsed programs: names ('curl', 'sh') and "
        "program plus first argument ('git push', 'rm -rf'); matches if any does",
    )
    task_labels: list[NonEmptyStr] | None = Field(None, description="the task must carry at least one of these")
    task_types: list[NonEmptyStr] | None = Field(None, description="the task type must be one of these")

    @field_validator("paths")
    @classmethod
    def _paths_compile(cls, patterns: list[str] | None) -> list[str] | None:
        if patterns is not None:
            compile_paths(tuple(patterns))
        return patterns


class Sandbox(_Strict):
    backend: Literal["local", "docker"] | None = Field(None, description="docker is stricter than local")
    network: bool | None = Field(None, description="false: no network inside the sandbox")
    memory_mb: int | None = Field(
        None, ge=6, description="at most this much memory (the lower of this and the request)"
    )


class Limits(_Strict):
    """Constraints returned with an allow/require_approval decision. Merging keeps the strictest."""

    max_cost_usd: float | None = Field(None, ge=0)
    max_runtime_s: float | None = Field(None, ge=0)
    max_attempts: int | None = Field(None, ge=0)
    allowed_tools: list[NonEmptyStr] | None = Field(None, description="intersected across rules")
    require_evidence: list[NonEmptyStr] | None = Field(None, description="united across rules")
    sandbox: Sandbox | None = None

    def is_empty(self) -> bool:
        return self == _EMPTY_LIMITS


_EMPTY_LIMITS = Limits()


class Rule(_Strict):
    id: str = Field(description="unique within one rules list; a later level with the same id replaces it")
    description: str | None = None
    effect: Effect
    final: bool = Field(False, description="later levels may replace this rule only with a stricter one")
    match: Match = Field(default_factory=Match)
    when: Annotated[str, AfterValidator(_check_condition)] | None = Field(
        None, description="CEL condition over subject, action, resource, context"
    )
    limits: Limits | None = None
    reason: str | None = Field(None, description="shown in decisions")

    # Where the rule was written, set by the loader (not part of the file format).
    _source: str | None = PrivateAttr(None)
    _line: int | None = PrivateAttr(None)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _RULE_ID.match(value):
            raise ValueError(
                f"rule id {value!r} must start with a letter or digit and contain only letters, digits and _.:/-"
            )
        return value

    @property
    def source(self) -> str | None:
        return self._source

    @property
    def line(self) -> int | None:
        return self._line

    @property
    def location(self) -> str:
        if self._source is None:
            return "<unknown>"
        return f"{self._source}:{self._line}" if self._line else self._source

    def as_final(self) -> Rule:
        return self.model_copy(update={"final": True})

    def display_reason(self) -> str:
        return self.reason or self.description or f"rule {self.id} ({self.effect.value})"


class AISection(_Strict):
    """Rules that apply only to AIs whose id matches the section key (an fnmatch glob)."""

    default: Effect | None = None
    default_final: bool = False
    rules: list[Rule] = Field(default_factory=list)


class TestExpectation(_Strict):
    __test__ = False  # not a pytest class

    effect: Effect
    rules: list[str] | None = Field(None, description="the matched rule ids, in any order")
    default_applied: bool | None = None
    limits: dict[str, Any] | None = Field(None, description="only the keys given are compared")


class PolicyTestCase(_Strict):
    name: NonEmptyStr
    policy: str | list[str] | None = Field(
        None, description="policy file(s) relative to the test file, merged in order"
    )
    input: dict[str, Any]
    expect: TestExpectation


class PolicyTestFile(_Strict):
    policy: str | list[str] | None = Field(None, description="default policy file(s) for every case")
    tests: list[PolicyTestCase]


class PolicySource(BaseModel):
    path: str
    sha256: str


class PolicyFile(_Strict):
    """One policy file. `version` is required so a future format can be told apart."""

    version: Annotated[int, AfterValidator(_check_version)]
    default: Effect | None = Field(None, description="effect when no rule matches; deny if no level sets it")
    default_final: bool = Field(False, description="later levels may tighten the default but not loosen it")
    rules: list[Rule] = Field(default_factory=list)
    ai: dict[NonEmptyStr, AISection] = Field(
        default_factory=dict, description="per-AI rules, keyed by an fnmatch glob on the AI id"
    )
    tests: list[PolicyTestCase] | None = Field(None, description="table-driven cases run against this file")

    _source: PolicySource | None = PrivateAttr(None)

    @property
    def source(self) -> PolicySource | None:
        return self._source


def export_json_schema() -> dict[str, Any]:
    schema = PolicyFile.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:aictl:schema:policy:1",
        "title": "aictl policy file (version 1)",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def render_json_schema() -> str:
    return json.dumps(export_json_schema(), indent=2) + "\n"


def write_json_schema(path: str | Path | None = None) -> Path:
    """Write the schema file (default: docs/policy.schema.json of this checkout) and return its path."""
    target = Path(path) if path is not None else Path(__file__).resolve().parents[2] / "docs" / "policy.schema.json"
    target.write_text(render_json_schema(), encoding="utf-8")
    return target

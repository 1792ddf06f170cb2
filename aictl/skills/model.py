"""One skill: a folder with SKILL.md (Agent Skills front matter plus aictl's keys) or a single YAML file.

Both forms become the same `Skill`. Errors are `SkillError`s naming the file and the line of the key at fault.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aictl.domain.errors import ConfigError
from aictl.skills.version import Requirement, parse_requirement, parse_version, valid_name

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.S)
_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:", re.M)
# Agent Skills keys, then aictl's; anything else is a typo worth an error.
STANDARD_KEYS = ("name", "description", "license", "allowed-tools", "metadata", "compatibility")
AICTL_KEYS = ("version", "requires", "labels", "capabilities", "paths", "connectors", "tests")
YAML_ONLY_KEYS = ("body", "files")
TEST_KEYS = ("name", "prompt", "expect", "labels")
EXPECT_KEYS = ("status", "contains", "not_contains")
SKILL_FILE = "SKILL.md"


class SkillError(ConfigError):
    """A skill file is malformed, or the skills in a registry do not fit together (exit 2)."""

    code = "skill_invalid"


@dataclass
class Skill:
    name: str
    description: str
    version: str
    body: str
    source: str  # the SKILL.md or .yaml file
    root: str | None  # the skill's folder (None for a single-file YAML skill)
    requires: tuple[Requirement, ...] = ()
    labels: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    connectors: tuple[str, ...] = ()
    tests: tuple[dict[str, Any], ...] = ()
    extra_files: dict[str, str] = field(default_factory=dict)  # YAML form: relative path -> text
    scope: str = "shared"  # "ai", "shared" or "user"
    ai: str | None = None  # the AI a per-AI skill belongs to
    lines: dict[str, int] = field(default_factory=dict)  # key -> line in `source`
    _digest: str | None = field(default=None, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def where(self, key: str | None = None) -> str:
        return f"{self.source}:{self.lines.get(key or '', 1)}"

    def files(self) -> list[str]:
        """Files beside SKILL.md (scripts/, references), relative to the skill's folder."""
        if self.root is None:
            return sorted(self.extra_files)
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in filenames:
                rel = os.path.relpath(os.path.join(dirpath, f), self.root)
                if rel != SKILL_FILE and not f.startswith("."):
                    out.append(rel)
        return sorted(out)

    def read_file(self, rel: str) -> str:
        if self.root is None:
            return self.extra_files[rel]
        return Path(self.root, rel).read_text(encoding="utf-8", errors="replace")

    def skill_md(self) -> str:
        """The skill as a SKILL.md an agent reads (front matter with name and description, then the body)."""
        desc = self.description.replace("\n", " ")
        return f"---\nname: {self.name}\ndescription: {_quote(desc)}\n---\n\n{self.body}\n"

    @property
    def digest(self) -> str:
        """sha256 over the skill's text and files: which exact skill reached a run."""
        if self._digest is None:
            h = hashlib.sha256(Path(self.source).read_bytes())
            for rel in self.files():
                h.update(b"\0" + rel.encode() + b"\0")
                h.update(self.read_file(rel).encode("utf-8", "replace"))
            self._digest = "sha256:" + h.hexdigest()
        return self._digest

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "scope": self.scope,
            "ai": self.ai,
            "source": self.source,
            "requires": [str(r) for r in self.requires],
            "labels": list(self.labels),
            "capabilities": list(self.capabilities),
            "paths": list(self.paths),
            "connectors": list(self.connectors),
            "tests": len(self.tests),
        }


def _quote(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML scalar whatever the text holds


def _load_yaml(text: str, name: str) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster on 200 skills
    try:
        return yaml.load(text, Loader=loader)
    except yaml.MarkedYAMLError as e:
        from aictl.yamlfile import describe_yaml_error

        raise SkillError(describe_yaml_error(e, name), hint=f"fix the YAML in {name}") from None
    except yaml.YAMLError as e:
        raise SkillError(f"{name}: invalid YAML: {e}") from None


def _key_lines(text: str, first_line: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in _TOP_KEY.finditer(text):
        out.setdefault(m.group(1), first_line + text.count("\n", 0, m.start()))
    return out


def _strings(meta: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = meta.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise SkillError(f"{where}: '{key}' must be a list of strings")
    return tuple(str(v) for v in value)


def load_skill_file(path: Path | str, *, scope: str = "shared", ai: str | None = None) -> Skill:
    """Parse a SKILL.md (or a folder holding one) or a single-file YAML skill, and check its keys."""
    path = Path(path)
    if path.is_dir():
        path = path / SKILL_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SkillError(f"{path}: cannot read: {e.strerror}") from None
    if path.suffix in (".yaml", ".yml"):
        meta = _load_yaml(text, str(path))
        lines = _key_lines(text, 1)
        if not isinstance(meta, dict):
            raise SkillError(f"{path}:1: a YAML skill is a mapping with name, description and body")
        body = meta.pop("body", "")
        files = meta.pop("files", None) or {}
        if not isinstance(body, str):
            raise SkillError(f"{path}:{lines.get('body', 1)}: 'body' must be text (the skill's instructions)")
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise SkillError(f"{path}:{lines.get('files', 1)}: 'files' maps a relative path to its text")
        root = None
    else:
        match = _FRONT_MATTER.match(text)
        if match is None:
            raise SkillError(
                f"{path}:1: a skill starts with YAML front matter between '---' lines",
                hint="e.g.\n---\nname: testing\ndescription: how we write tests\nversion: 1.0.0\n---",
            )
        meta = _load_yaml(match.group(1), str(path)) or {}
        lines = _key_lines(match.group(1), 2)
        if not isinstance(meta, dict):
            raise SkillError(f"{path}:2: the front matter must be a mapping of keys")
        body, files, root = text[match.end() :], {}, str(path.parent)
    return _build(meta, body.strip(), files, path, lines, root, scope, ai)


def _build(
    meta: dict[str, Any],
    body: str,
    files: dict[str, str],
    path: Path,
    lines: dict[str, int],
    root: str | None,
    scope: str,
    ai: str | None,
) -> Skill:
    def at(key: str) -> str:
        return f"{path}:{lines.get(key, 1)}"

    known = STANDARD_KEYS + AICTL_KEYS
    for key in meta:
        if key not in known:
            raise SkillError(f"{at(str(key))}: unknown key {key!r}", hint="known keys: " + ", ".join(known))
    for key in ("name", "description"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise SkillError(f"{at(key)}: '{key}' is required and must be text")
    name = meta["name"].strip()
    if not valid_name(name) or name == "ai":
        raise SkillError(f"{at('name')}: name {name!r} must be lowercase letters, digits and '-' (and not 'ai')")
    if root is not None and Path(root).name != name:
        raise SkillError(f"{at('name')}: name {name!r} must match its folder {Path(root).name!r}")
    if root is None and path.stem != name:
        raise SkillError(f"{at('name')}: name {name!r} must match the file name {path.name!r}")
    version = str(meta.get("version", "0.0.0"))
    try:
        parse_version(version)
    except ValueError as e:
        raise SkillError(f"{at('version')}: {e}") from None
    requires = []
    for text in _strings(meta, "requires", at("requires")):
        try:
            req = parse_requirement(text)
        except ValueError as e:
            raise SkillError(f"{at('requires')}: {e}") from None
        if req.name == name:
            raise SkillError(f"{at('requires')}: {name} requires itself")
        requires.append(req)
    return Skill(
        name=name,
        description=meta["description"].strip(),
        version=version,
        body=body,
        source=str(path),
        root=root,
        requires=tuple(requires),
        labels=_strings(meta, "labels", at("labels")),
        capabilities=_strings(meta, "capabilities", at("capabilities")),
        paths=_strings(meta, "paths", at("paths")),
        connectors=_strings(meta, "connectors", at("connectors")),
        tests=_tests(meta.get("tests"), at("tests")),
        extra_files=files,
        scope=scope,
        ai=ai,
        lines=lines,
    )


def _tests(value: Any, where: str) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SkillError(f"{where}: 'tests' is a list of cases, each with a prompt and expect")
    out = []
    for i, case in enumerate(value, 1):
        if not isinstance(case, dict) or not isinstance(case.get("prompt"), str):
            raise SkillError(f"{where}: test {i} needs a 'prompt' (text)")
        bad = [k for k in case if k not in TEST_KEYS]
        expect = case.get("expect") or {}
        if not bad and isinstance(expect, dict):
            bad = [f"expect.{k}" for k in expect if k not in EXPECT_KEYS]
        elif not bad:
            bad = ["expect (must be a mapping)"]
        if bad:
            raise SkillError(
                f"{where}: test {i}: unknown key {bad[0]}",
                hint="a case has name, prompt, labels, expect: {status, contains, not_contains}",
            )
        out.append(
            {
                "name": str(case.get("name") or f"case {i}"),
                "prompt": case["prompt"],
                "labels": [str(x) for x in case.get("labels") or []],
                "expect": {
                    "status": expect.get("status", "done"),
                    "contains": _listed(expect.get("contains")),
                    "not_contains": _listed(expect.get("not_contains")),
                },
            }
        )
    return tuple(out)


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


__all__ = ["SKILL_FILE", "Skill", "SkillError", "load_skill_file"]

"""Reading workflow files: every problem of a file at once, each with file and line.

The text is parsed twice: by aictl.yamlfile (syntax errors and repeated keys, with file:line:column) and
composed into a node tree, so a problem found on the data (an unknown key, a cycle in `needs`, an unknown
step in an expression, bad CEL) is reported at the line it was written on. Where workflows live:
`.ai/workflows/NAME.yaml` in a project; `workflows/` at the top of this repository holds examples.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from aictl.domain.errors import ConfigError, NotFound
from aictl.policy.sources import valid_overlay_name
from aictl.workflows import expr
from aictl.workflows.model import INPUT_TYPES, InputSpec, Retry, Step, Workflow

TOP_KEYS = ("version", "name", "description", "policy", "inputs", "steps")
INPUT_KEYS = ("type", "required", "default", "description")
STEP_KEYS = (
    "id", "title", "needs", "when", "prompt", "command", "ai", "locks", "verify", "retry", "goto", "approval",
    "merge", "outputs", "for_each", "priority",
)  # fmt: skip
AI_KEYS = ("id", "labels", "capabilities")
RETRY_KEYS = ("until", "max")
APPROVAL_KEYS = ("reason",)
KINDS = ("prompt", "command", "approval", "merge", "goto")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
OUTPUT = re.compile(r"^(result(\.[A-Za-z_][\w-]*)*|stdout|file:[^\s]+)$")
MAX_STEPS = 500
MAX_RETRY = 100


class WorkflowInvalid(ConfigError):
    code = "workflow_invalid"


class _Issues:
    def __init__(self, source: str, root: Any):
        self.source, self.root = source, root
        self.items: list[tuple[int, str]] = []

    def add(self, path: tuple[Any, ...], message: str, *, key: bool = False) -> None:
        self.items.append((_line(self.root, path, key), message))

    def error(self) -> WorkflowInvalid:
        items = sorted(self.items, key=lambda i: i[0])
        lines = [f"{self.source}:{line}: {msg}" for line, msg in items]
        count = f"{len(items)} problem" + ("s" if len(items) != 1 else "")
        return WorkflowInvalid(
            f"workflow {self.source} is invalid ({count}):\n  " + "\n  ".join(lines),
            hint=f"fix the lines above, then check again with: aictl workflow validate {self.source}",
            details={"file": self.source, "issues": [{"line": ln, "message": m} for ln, m in items]},
        )


def _line(root: Any, path: tuple[Any, ...], key: bool = False) -> int:
    """The 1-based line of the node at `path` (or of its key), else of the deepest node found."""
    from yaml.nodes import MappingNode, SequenceNode

    node, key_node = root, None
    for part in path:
        if isinstance(node, MappingNode):
            found = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if found is None:
                break
            key_node, node = found
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            key_node, node = None, node.value[part]
        else:
            break
    target = key_node if key and key_node is not None else node
    return target.start_mark.line + 1 if target is not None else 1


def load_text(text: str, source: str) -> Workflow:
    """A checked Workflow from YAML text; WorkflowInvalid lists every problem with its line."""
    import yaml

    from aictl.yamlfile import parse_yaml

    data = parse_yaml(text, source)  # syntax errors and repeated keys, with file:line
    root = yaml.compose(text, Loader=yaml.SafeLoader) if data is not None else None
    issues = _Issues(source, root)
    if not isinstance(data, dict):
        issues.add((), "expected a mapping with version, name and steps")
        raise issues.error()
    wf = _build(data, issues)
    if issues.items:
        raise issues.error()
    assert wf is not None
    wf.source, wf.sha256 = source, hashlib.sha256(text.encode("utf-8")).hexdigest()
    return wf


def load_file(path: str | Path) -> Workflow:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    return load_text(text, str(p))


def workflow_dir(project: Path) -> Path:
    return project / ".ai" / "workflows"


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "workflows"  # symlink to workflows/ in a checkout


def find(project: Path | None, name: str) -> Path:
    """A workflow by name (.ai/workflows/NAME.yaml, else one of aictl's examples) or by path."""
    direct = Path(name)
    if direct.suffix in (".yaml", ".yml") and direct.is_file():
        return direct
    folders = [workflow_dir(project)] if project is not None else []
    folders.append(EXAMPLES)  # aictl's own examples (feature, bugfix, …), shipped in the package
    for folder in folders:
        for ext in (".yaml", ".yml"):
            p = folder / f"{name}{ext}"
            if p.is_file():
                return p
    raise NotFound(
        f"no workflow {name!r}" + (f" in {workflow_dir(project)}" if project is not None else ""),
        hint="see them with: aictl workflow list, or create one: aictl workflow create NAME",
    )


def listing(project: Path) -> list[Path]:
    folder = workflow_dir(project)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


# -- checks ---------------------------------------------------------------------------------------


def _unknown(
    issues: _Issues, data: dict[str, Any], allowed: tuple[str, ...], path: tuple[Any, ...], label: str | None = None
) -> None:
    for k in data:
        if k not in allowed:
            where = f"{label or '.'.join(map(str, path))}: " if path else ""
            issues.add((*path, k), f"{where}unknown key {k!r}; allowed keys: {', '.join(allowed)}", key=True)


def _build(data: dict[str, Any], issues: _Issues) -> Workflow | None:
    _unknown(issues, data, TOP_KEYS, ())
    version = data.get("version")
    if version != 1:
        issues.add(("version",), f"unsupported version {version!r}; supported: 1")
    name = data.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        issues.add(("name",), f"name must be 1-64 letters, digits, '.', '_' or '-', got {name!r}")
    description = data.get("description") or ""
    if not isinstance(description, str):
        issues.add(("description",), "description must be text")
    policy = data.get("policy")
    if policy is not None and (not isinstance(policy, str) or not valid_overlay_name(policy)):
        issues.add(
            ("policy",),
            f"policy names a workflow overlay (.ai/policies/workflows/NAME.yaml): letters, digits and _.-, "
            f"got {policy!r}",
        )
        policy = None
    inputs = _inputs(data.get("inputs") or {}, issues)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        issues.add(("steps",), "steps must be a non-empty list")
        return None
    if len(raw_steps) > MAX_STEPS:
        issues.add(("steps",), f"{len(raw_steps)} steps: at most {MAX_STEPS}")
    steps = [s for i, raw in enumerate(raw_steps) if (s := _step(raw, i, issues)) is not None]
    ids = [s.id for s in steps]
    for i, s in enumerate(steps):
        if s.id in ids[:i]:
            issues.add(("steps", i, "id"), f"duplicate step id {s.id!r}")
    _graph(steps, issues, raw_steps)
    known = {"steps": set(ids), "inputs": set(inputs)}
    for i, s in enumerate(steps):
        _expressions(s, i, known, issues)
    if not isinstance(name, str):
        return None
    return Workflow(name=name, steps=steps, description=description, inputs=inputs, policy=policy)


def _inputs(raw: Any, issues: _Issues) -> dict[str, InputSpec]:
    if not isinstance(raw, dict):
        issues.add(("inputs",), "inputs must be a mapping of name: {type, required, default}")
        return {}
    out = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_]\w{0,63}$", name):
            issues.add(("inputs", name), f"input name {name!r} must be an identifier", key=True)
            continue
        if not isinstance(spec, dict):
            issues.add(("inputs", name), f"input {name}: expected a mapping with type, required, default")
            continue
        _unknown(issues, spec, INPUT_KEYS, ("inputs", name))
        kind = spec.get("type", "string")
        if kind not in INPUT_TYPES:
            issues.add(("inputs", name, "type"), f"input {name}: type must be one of {', '.join(INPUT_TYPES)}")
        required = spec.get("required", False)
        if not isinstance(required, bool):
            issues.add(("inputs", name, "required"), f"input {name}: required must be true or false")
        out[name] = InputSpec(
            type=kind,
            required=bool(required),
            default=spec.get("default"),
            description=str(spec.get("description", "")),
        )
    return out


def _str_list(issues: _Issues, path: tuple[Any, ...], value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        issues.add(path, f"{what} must be a list of strings")
        return []
    return list(value)


def _step(raw: Any, i: int, issues: _Issues) -> Step | None:
    at = ("steps", i)
    if not isinstance(raw, dict):
        issues.add(at, f"step {i + 1}: expected a mapping with an id")
        return None
    sid = raw.get("id")
    _unknown(issues, raw, STEP_KEYS, at, f"step {sid if isinstance(sid, str) else i + 1}")
    if not isinstance(sid, str) or not STEP_ID.match(sid):
        issues.add((*at, "id") if "id" in raw else at, f"step {i + 1}: id must be an identifier, got {sid!r}")
        return None
    kinds = [k for k in KINDS if raw.get(k) not in (None, False)]
    if len(kinds) != 1:
        what = ", ".join(kinds) if kinds else "none"
        issues.add(at, f"step {sid}: give exactly one of {', '.join(KINDS)} (found: {what})")
    for key in ("prompt", "command", "verify", "when", "title", "goto"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            issues.add((*at, key), f"step {sid}: {key} must be text")
    if "merge" in raw and not isinstance(raw["merge"], bool):
        issues.add((*at, "merge"), f"step {sid}: merge must be true or false")
    ai = raw.get("ai") or {}
    if not isinstance(ai, dict):
        issues.add((*at, "ai"), f"step {sid}: ai must be a mapping of id, labels, capabilities")
        ai = {}
    _unknown(issues, ai, AI_KEYS, (*at, "ai"))
    for key in ("labels", "capabilities"):
        _str_list(issues, (*at, "ai", key), ai.get(key), f"step {sid}: ai.{key}")
    if ai and (raw.get("command") is not None or raw.get("approval") or raw.get("merge") or raw.get("goto")):
        issues.add((*at, "ai"), f"step {sid}: ai routes agent steps only (this is not a prompt step)")
    retry = None
    if raw.get("retry") is not None:
        r = raw["retry"]
        if not isinstance(r, dict) or not isinstance(r.get("until"), str):
            issues.add((*at, "retry"), f"step {sid}: retry needs until (a CEL condition) and max")
        else:
            _unknown(issues, r, RETRY_KEYS, (*at, "retry"))
            limit = r.get("max", 3)
            if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RETRY:
                issues.add((*at, "retry", "max"), f"step {sid}: retry.max must be 1 to {MAX_RETRY}, got {limit!r}")
                limit = 1
            retry = Retry(until=r["until"], max=limit)
    approval = raw.get("approval")
    if approval is not None:
        if approval is True:
            approval = {}
        if not isinstance(approval, dict):
            issues.add((*at, "approval"), f"step {sid}: approval must be a mapping like {{reason: …}}")
            approval = {}
        _unknown(issues, approval, APPROVAL_KEYS, (*at, "approval"))
    outputs = raw.get("outputs") or {}
    if not isinstance(outputs, dict):
        issues.add((*at, "outputs"), f"step {sid}: outputs must be a mapping of name: source")
        outputs = {}
    for name, src in outputs.items():
        if not isinstance(src, str) or not OUTPUT.match(src):
            issues.add(
                (*at, "outputs", name),
                f"step {sid}: output {name!r} must be result.<key>, stdout or file:<path>, got {src!r}",
            )
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        issues.add((*at, "priority"), f"step {sid}: priority must be an integer")
        priority = 0
    step = Step(
        id=sid,
        needs=_str_list(issues, (*at, "needs"), raw.get("needs"), f"step {sid}: needs"),
        title=raw.get("title"),
        when=raw.get("when"),
        prompt=raw.get("prompt"),
        command=raw.get("command"),
        ai=dict(ai),
        locks=raw.get("locks"),
        verify=raw.get("verify"),
        retry=retry,
        goto=raw.get("goto"),
        approval=approval,
        merge=bool(raw.get("merge", False)),
        outputs={str(k): str(v) for k, v in outputs.items()},
        for_each=raw.get("for_each"),
        priority=priority,
        line=_line(issues.root, at),
    )
    if step.for_each is not None and (step.retry or step.kind not in ("agent", "command")):
        issues.add((*at, "for_each"), f"step {sid}: for_each fans out agent or command steps, without retry")
    if step.kind in ("approval", "merge", "goto") and (step.verify or step.locks or step.outputs):
        issues.add(at, f"step {sid}: a {step.kind} step runs no agent: verify, locks and outputs do not apply")
    if step.kind == "goto" and step.when is None:
        issues.add((*at, "goto"), f"step {sid}: a goto needs a when (else it would loop every time)")
    return step


def _graph(steps: list[Step], issues: _Issues, raw: list[Any]) -> None:
    from aictl.tasks import dag

    index = {s.id: i for i, s in enumerate(steps)}
    for i, s in enumerate(steps):
        for n in s.needs:
            if n not in index:
                issues.add(("steps", i, "needs"), f"step {s.id}: needs unknown step {n!r}")
            elif n == s.id:
                issues.add(("steps", i, "needs"), f"step {s.id}: needs itself")
    edges = {s.id: [n for n in s.needs if n in index and n != s.id] for s in steps}
    cycle = dag.find_cycle(edges)
    if cycle:
        first = min(index[c] for c in cycle if c in index)
        issues.add(
            ("steps", first, "needs"),
            f"cycle in needs: {dag.format_cycle(cycle)} (loop back only through a goto with a bounded retry)",
        )
        return
    wf = Workflow(name="_", steps=steps)
    for i, s in enumerate(steps):
        if s.goto is None:
            continue
        if s.goto not in index:
            issues.add(("steps", i, "goto"), f"step {s.id}: goto unknown step {s.goto!r}")
        elif s.goto not in wf.ancestors(s.id):
            issues.add(("steps", i, "goto"), f"step {s.id}: goto {s.goto!r} must go back to a step it needs")
        elif steps[index[s.goto]].retry is None:
            issues.add(
                ("steps", i, "goto"),
                f"step {s.id}: goto {s.goto!r} is unbounded; give {s.goto} a retry with max (the loop counts there)",
            )


def _expressions(s: Step, i: int, known: dict[str, set[str]], issues: _Issues) -> None:
    at = ("steps", i)
    opts: dict[str, Any] = {"steps": known["steps"], "inputs": known["inputs"], "item": s.for_each is not None}
    if s.when is not None:
        for p in expr.problems(s.when, **opts):
            issues.add((*at, "when"), f"step {s.id}: when: {p}")
    if s.retry is not None:
        for p in expr.problems(s.retry.until, **opts):
            issues.add((*at, "retry", "until"), f"step {s.id}: retry.until: {p}")
    fields: list[tuple[str, Any]] = [
        ("prompt", s.prompt),
        ("command", s.command),
        ("verify", s.verify),
        ("title", s.title),
        ("locks", s.locks),
        ("for_each", s.for_each),
        ("approval", (s.approval or {}).get("reason")),
    ]
    for key, value in fields:
        texts = value if isinstance(value, list) else [value]
        here = {**opts, "item": False} if key == "for_each" else opts
        for t in texts:
            if t is None:
                continue
            if not isinstance(t, str):
                issues.add((*at, key), f"step {s.id}: {key} must be text or a list of text")
                continue
            for p in expr.template_problems(t, **here):
                issues.add((*at, key), f"step {s.id}: {key}: {p}")
    if isinstance(s.for_each, str) and not expr.TEMPLATE.search(s.for_each):
        issues.add((*at, "for_each"), f"step {s.id}: for_each must be a template, e.g. ${{{{ inputs.items }}}}")


__all__ = ["WorkflowInvalid", "find", "listing", "load_file", "load_text", "workflow_dir"]

"""Reading policy files: every problem of a file at once, each with file, line and column.

YAML is composed into a node tree first, so a pydantic error location such as
``('rules', 2, 'match', 'actions', 0)`` can be mapped back to where it was written.
"""

from __future__ import annotations

import copy
import hashlib
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from aictl.domain.errors import ConfigError
from aictl.policy.schema import SUPPORTED_VERSIONS, PolicyFile, PolicySource

M = TypeVar("M", bound=BaseModel)


class PolicyIssue(BaseModel):
    """One problem in a policy (or policy test) file. Lines and columns count from 1."""

    file: str
    line: int | None = None
    column: int | None = None
    message: str
    rule_id: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        rule = f"rule {self.rule_id!r}: " if self.rule_id else ""
        return f"{where}: {rule}{self.message}"


def load_policy_file(path: str | Path) -> PolicyFile:
    """Load and validate one file; raises ConfigError listing every problem in it."""
    policy, issues = load_model_file(Path(path), PolicyFile)
    _raise_if_any(str(path), issues)
    assert policy is not None
    return policy


def load_policy_text(text: str, source_name: str = "<policy>") -> PolicyFile:
    policy, issues = load_model_text(text, source_name, PolicyFile)
    _raise_if_any(source_name, issues)
    assert policy is not None
    return policy


def validate_policy_file(path: str | Path) -> list[PolicyIssue]:
    """Every problem in a file; an empty list means it is valid."""
    return load_model_file(Path(path), PolicyFile)[1]


def validate_policy_text(text: str, source_name: str = "<policy>") -> list[PolicyIssue]:
    return load_model_text(text, source_name, PolicyFile)[1]


def issues_error(source: str, issues: list[PolicyIssue], what: str = "policy file") -> ConfigError:
    """One ConfigError listing every issue; `details["issues"]` holds them as dicts."""
    count = f"{len(issues)} problem" + ("s" if len(issues) != 1 else "")
    lines = [f"{what} {source} is invalid ({count}):"] + [f"  {issue}" for issue in issues]
    return ConfigError(
        "\n".join(lines),
        hint=f"fix the lines above, then check again with: aictl policy validate {source}",
        details={"file": source, "issues": [issue.model_dump() for issue in issues]},
    )


def _raise_if_any(source: str, issues: list[PolicyIssue]) -> None:
    if issues:
        raise issues_error(source, issues)


def load_model_file(path: Path, model: type[M]) -> tuple[M | None, list[PolicyIssue]]:
    """Read a YAML file into `model`, returning (the model or None, every issue found)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [PolicyIssue(file=str(path), message=f"cannot read the file: {exc.strerror or exc}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [PolicyIssue(file=str(path), message=f"not UTF-8 text (byte {exc.start})")]
    return load_model_text(text, str(path), model, raw=raw)


def load_model_text(
    text: str, source: str, model: type[M], *, raw: bytes | None = None
) -> tuple[M | None, list[PolicyIssue]]:
    """Parse YAML text into `model`, returning (the model or None, every issue found)."""
    raw = text.encode("utf-8") if raw is None else raw
    node, data, issues = _parse_yaml(text, source)
    if node is None:
        if not issues:
            expected = "version: 1" if model is PolicyFile else "tests:"
            issues = [
                PolicyIssue(
                    file=source, line=1, column=1, message=f"the file is empty; expected a mapping with {expected}"
                )
            ]
        return None, issues
    if model is PolicyFile and isinstance(data, dict):
        version = data.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version not in SUPPORTED_VERSIONS:
            vnode, _ = find_node(node, ("version",))
            supported = ", ".join(map(str, SUPPORTED_VERSIONS))
            # Other complaints would be about a format this version does not know.
            return None, [
                _issue(source, vnode, f"unsupported policy version {version}; supported versions: {supported}")
            ]
    if model is PolicyFile:
        issues += _duplicate_rule_ids(node, data, source)
    result: M | None = None
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        issues += _merge_union_issues([_from_pydantic(source, node, data, model, err) for err in exc.errors()])
    if issues:
        return None, sorted(issues, key=lambda i: (i.line or 0, i.column or 0))
    assert result is not None
    if isinstance(result, PolicyFile):
        _annotate_rules(result, node, source)
        result._source = PolicySource(path=source, sha256=hashlib.sha256(raw).hexdigest())
    return result, []


def _parse_yaml(text: str, source: str) -> tuple[Node | None, Any, list[PolicyIssue]]:
    """(node tree, plain data, issues). Duplicate keys are issues, but parsing goes on (the last one wins)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None, []
        duplicates = _duplicate_keys(node, source)
        return node, loader.construct_document(node), duplicates
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        return (
            None,
            None,
            [
                PolicyIssue(
                    file=source,
                    line=mark.line + 1 if mark else None,
                    column=mark.column + 1 if mark else None,
                    message=f"YAML syntax error: {problem}{context}",
                )
            ],
        )
    except yaml.YAMLError as exc:
        return None, None, [PolicyIssue(file=source, message=f"YAML error: {exc}")]
    finally:
        loader.dispose()


def _duplicate_keys(root: Node, source: str) -> list[PolicyIssue]:
    issues: list[PolicyIssue] = []
    stack, seen_nodes = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:  # aliases share nodes
            continue
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[str, Node] = {}
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in first:
                        line = first[key.value].start_mark.line + 1
                        issues.append(
                            _issue(source, key, f"duplicate key {key.value!r} (first defined at line {line})")
                        )
                    else:
                        first[key.value] = key
                stack.append(value)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return sorted(issues, key=lambda i: (i.line or 0, i.column or 0))


def find_node(root: Node, loc: tuple[Any, ...]) -> tuple[Node, Node | None]:
    """The deepest node along `loc`, and the key node that led to it (for mapping entries)."""
    node, key_node = root, None
    for part in loc:
        if part == "[key]" and key_node is not None:
            return key_node, key_node
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value == str(part):
                    node, key_node = value, key
                    break
            else:
                if isinstance(part, str):
                    continue  # a union member tag such as 'list[str]', or a missing key
                return node, key_node
        elif isinstance(node, SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node, key_node
            node, key_node = node.value[part], None
    return node, key_node


def _issue(source: str, node: Node | None, message: str, rule_id: str | None = None) -> PolicyIssue:
    if node is None:
        return PolicyIssue(file=source, message=message, rule_id=rule_id)
    mark = node.start_mark
    return PolicyIssue(file=source, line=mark.line + 1, column=mark.column + 1, message=message, rule_id=rule_id)


def _rule_prefix(loc: tuple[Any, ...], data: Any) -> tuple[str | None, int]:
    """(the rule id, how many loc parts lead to the rule) when `loc` points inside a rule."""
    prefix: tuple[Any, ...] | None = None
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        prefix = loc[:2]
    elif len(loc) >= 4 and loc[0] == "ai" and loc[2] == "rules" and isinstance(loc[3], int):
        prefix = loc[:4]
    if prefix is None:
        return None, 0
    value = data
    for part in prefix:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None, 0
    rule_id = value.get("id") if isinstance(value, dict) else None
    return (rule_id if isinstance(rule_id, str) else None), len(prefix)


_UNION_TAGS = {"[key]", "str", "int", "float", "bool", "list", "dict", "none"}


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or "[" in str(part):
            continue  # pydantic names the union member it tried: ('policy', 'list[str]')
        else:
            out += ("." if out else "") + str(part)
    return out


def _merge_union_issues(issues: list[PolicyIssue]) -> list[PolicyIssue]:
    """One issue per position: a value that fits no member of a union gets one error per member."""
    merged: dict[tuple[int | None, int | None, str], PolicyIssue] = {}
    for issue in issues:
        where, _, text = issue.message.partition(": ")
        key = (issue.line, issue.column, where)
        if key in merged and issue.line is not None:
            merged[key].message += f", or {text}"
        else:
            merged[key] = issue.model_copy()
    return list(merged.values())


def _from_pydantic(source: str, root: Node, data: Any, model: type[BaseModel], err: Any) -> PolicyIssue:
    loc = tuple(err["loc"])
    kind = err["type"]
    node, key_node = find_node(root, loc)
    rule_id, rule_depth = _rule_prefix(loc, data)
    where = _dotted(loc[rule_depth:]) if rule_id is not None else _dotted(loc)
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        message = f"unknown key {loc[-1]!r}" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        if where.rpartition(".")[0]:
            message = f"{where.rpartition('.')[0]}: {message}"
        return _issue(source, key_node or node, message, rule_id)
    if kind == "missing":
        name = loc[-1]
        message = f"missing required key {name!r}"
        if name == "version" and len(loc) == 1:
            message += f" (supported versions: {', '.join(map(str, SUPPORTED_VERSIONS))})"
        parent = where.rpartition(".")[0]
        return _issue(source, node, f"{parent}: {message}" if parent else message, rule_id)
    if kind == "model_type" and not loc:
        got = type(err["input"]).__name__
        return _issue(source, node, f"expected a mapping at the top level, got {got}")
    if loc and loc[-1] == "[key]":
        return _issue(source, node, f"{_dotted(loc[:-2])}: key {loc[-2]!r}: {err['msg']}", rule_id)
    text = err["msg"]
    if loc and loc[-1] == "when":
        node = _point_into_scalar(node, text)
    if text.startswith("Value error, "):
        text = text[len("Value error, ") :]
    elif kind != "model_type" and "input" in err and not isinstance(err["input"], (dict, list)):
        text = f"{text}, got {err['input']!r}"
    return _issue(source, node, f"{where}: {text}" if where else text, rule_id)


_CHARACTER = re.compile(r"at character (\d+):")


def _point_into_scalar(node: Node, message: str) -> Node:
    """For a one-line condition, a node positioned at the character the CEL parser complained about."""
    found = _CHARACTER.search(message)
    if not found or not isinstance(node, ScalarNode) or node.start_mark.line != node.end_mark.line:
        return node
    offset = int(found.group(1)) - 1 + (1 if node.style in ("'", '"') else 0)
    mark = copy.copy(node.start_mark)
    mark.column += offset
    return ScalarNode(node.tag, node.value, mark, node.end_mark, node.style)


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return []
            tp = field.annotation
        elif origin is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _rule_lists(data: Any) -> list[tuple[tuple[Any, ...], list[Any]]]:
    """Each rules list of a raw policy mapping, with its location."""
    if not isinstance(data, dict):
        return []
    found: list[tuple[tuple[Any, ...], list[Any]]] = []
    if isinstance(data.get("rules"), list):
        found.append((("rules",), data["rules"]))
    sections = data.get("ai")
    if isinstance(sections, dict):
        for key, section in sections.items():
            if isinstance(section, dict) and isinstance(section.get("rules"), list):
                found.append((("ai", key, "rules"), section["rules"]))
    return found


def _duplicate_rule_ids(root: Node, data: Any, source: str) -> list[PolicyIssue]:
    """Rule ids used twice in one list, checked on the raw data so other errors do not hide them."""
    issues: list[PolicyIssue] = []
    for loc, rules in _rule_lists(data):
        first_line: dict[str, int] = {}
        for index, rule in enumerate(rules):
            rule_id = rule.get("id") if isinstance(rule, dict) else None
            if not isinstance(rule_id, str):
                continue
            id_node, _ = find_node(root, (*loc, index, "id"))
            line = id_node.start_mark.line + 1
            if rule_id in first_line:
                message = (
                    f"duplicate rule id {rule_id!r}: defined at line {first_line[rule_id]} and again at line {line}"
                )
                issues.append(_issue(source, id_node, message, rule_id))
            else:
                first_line[rule_id] = line
    return issues


def _annotate_rules(policy: PolicyFile, root: Node, source: str) -> None:
    """Record where each rule was written, for error messages and explanations."""
    lists = [(("rules",), policy.rules)] + [(("ai", key, "rules"), s.rules) for key, s in policy.ai.items()]
    for loc, rules in lists:
        for index, rule in enumerate(rules):
            node, _ = find_node(root, (*loc, index))
            rule._source = source
            rule._line = node.start_mark.line + 1

"""Expressions and templates of workflows: CEL over `inputs`, `steps`, `run` (and `item` in a for_each step).

`when` and `retry.until` are CEL conditions; `${{ expr }}` in prompts, commands, verify and locks is a CEL
expression rendered into the text. Rendered into a command or verify line, each value is quoted for the shell
(a model's output or an input can then never become shell syntax). A field that is one template and nothing
else (`locks: ${{ inputs.paths }}`) takes the value itself, e.g. a list. CEL is compiled once per expression
by aictl.policy.conditions (the same engine the policy uses; never `eval`).
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from aictl.domain.errors import UsageError
from aictl.policy.conditions import _compiler_message, compile_condition, new_activation

TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.S)
_WHOLE = re.compile(r"^\s*\$\{\{(.*?)\}\}\s*$", re.S)
_STEP_REF = re.compile(r"(?<![\w.])steps\s*\.\s*([A-Za-z_][\w-]*)")
_INPUT_REF = re.compile(r"(?<![\w.])inputs\s*\.\s*([A-Za-z_]\w*)")
_MACRO_BINDING = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
VARIABLES = ("inputs", "steps", "run")


class ExpressionError(UsageError):
    """An expression failed when evaluated (a missing output, a type error): the step fails with this reason."""

    code = "workflow_expression"


def problems(expression: str, *, steps: set[str], inputs: set[str], item: bool = False) -> list[str]:
    """What is wrong with one expression (it does not compile, names an unknown step, input or variable)."""
    if not expression.strip():
        return ["the expression is empty"]
    try:
        program = compile_condition(expression)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - ValueError from the parser; a Rust panic is a BaseException
        return [f"bad CEL {expression!r}: {_compiler_message(str(exc))}"]
    out = []
    allowed = set(VARIABLES) | ({"item"} if item else set()) | set(_MACRO_BINDING.findall(expression))
    unknown = [v for v in program.variables() if v not in allowed]
    if unknown:
        out.append(
            f"unknown variable(s) {', '.join(map(repr, unknown))} in {expression!r}; available: "
            + ", ".join(sorted(set(VARIABLES) | ({"item"} if item else set())))
        )
    for name in _STEP_REF.findall(expression):
        if name not in steps:
            out.append(f"unknown step {name!r} in {expression!r}")
    for name in _INPUT_REF.findall(expression):
        if name not in inputs:
            out.append(f"unknown input {name!r} in {expression!r}")
    return out


def template_problems(text: str, **known: Any) -> list[str]:
    out = []
    for expr in TEMPLATE.findall(text):
        out += problems(expr, **known)
    if "${{" in TEMPLATE.sub("", text):
        out.append(f"an unclosed ${{{{ in {text[:80]!r}")
    return out


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    try:
        return compile_condition(expression).execute(new_activation(context))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - CEL errors (a missing key, a type mismatch) are the step's
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExpressionError(f"{expression.strip()!r}: {first[:300]}") from None


def condition(expression: str, context: dict[str, Any]) -> bool:
    value = evaluate(expression, context)
    if value is True or value is False:
        return value
    raise ExpressionError(f"{expression.strip()!r} gave {type(value).__name__} {value!r}, expected true or false")


def text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def render(text: str, context: dict[str, Any], *, shell: bool = False) -> str:
    """Fill every ${{ … }}; with shell=True each value is one shell word, quoted."""

    def fill(m: re.Match[str]) -> str:
        value = text_of(evaluate(m.group(1), context))
        return shlex.quote(value) if shell else value

    return TEMPLATE.sub(fill, text)


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """A field that is exactly one template takes the value (a list stays a list); lists render item by item."""
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole:
            return evaluate(whole.group(1), context)
        return render(value, context)
    if isinstance(value, list):
        out: list[Any] = []
        for v in value:
            got = render_value(v, context)
            out.extend(got if isinstance(got, list) else [got])
        return out
    return value


def string_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise ExpressionError(f"{what} must be a list of strings, got {text_of(value)[:200]}")
    return [str(v) for v in value]


__all__ = [
    "ExpressionError",
    "condition",
    "evaluate",
    "problems",
    "render",
    "render_value",
    "string_list",
    "template_problems",
    "text_of",
]

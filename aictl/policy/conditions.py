"""CEL conditions (`when:`): compile once, check names at load time, evaluate safely."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

VARIABLES: tuple[str, ...] = ("subject", "action", "resource", "context")

# Names bound by CEL macros, e.g. the `p` in `resource.paths.exists(p, p.startsWith("src/"))`.
_MACRO_BINDING = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")

_cel: ModuleType | None = None


def _load_cel() -> ModuleType:
    """Load the compiled `cel.cel` extension without `cel/__init__`, which imports a CLI (~0.2 s)."""
    global _cel
    if _cel is not None:
        return _cel
    module = sys.modules.get("cel.cel")
    if module is None:
        try:
            spec = importlib.util.find_spec("cel")
            folder = Path(spec.submodule_search_locations[0])  # type: ignore[union-attr,index]
            binary = next(
                folder / f"cel{suffix}"
                for suffix in importlib.machinery.EXTENSION_SUFFIXES
                if (folder / f"cel{suffix}").exists()
            )
            ext_spec = importlib.util.spec_from_file_location("cel.cel", binary)
            module = importlib.util.module_from_spec(ext_spec)  # type: ignore[arg-type]
            sys.modules["cel.cel"] = module  # a later `import cel` reuses it (PyO3 initialises once)
            ext_spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - any failure of the fast path falls back to the supported import
            sys.modules.pop("cel.cel", None)
            import cel  # the slow but supported way

            module = cel
    _cel = module
    return module


@lru_cache(maxsize=1024)
def compile_condition(expression: str) -> Any:
    """The compiled CEL program for an expression; raises ValueError when it does not compile."""
    return _load_cel().compile(expression)


@lru_cache(maxsize=1024)
def condition_error(expression: str) -> str | None:
    """Why an expression is unusable (syntax error, unknown variable), or None when it is fine."""
    if not expression.strip():
        return "condition is empty"
    try:
        program = compile_condition(expression)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - ValueError with the parser's message; a Rust panic is a BaseException
        return f"condition does not compile: {_compiler_message(str(exc))}"
    bound = set(_MACRO_BINDING.findall(expression))
    unknown = [name for name in program.variables() if name not in VARIABLES and name not in bound]
    if unknown:
        return f"condition uses unknown variable(s) {', '.join(map(repr, unknown))}; available: {', '.join(VARIABLES)}"
    return None


_PARSER_POSITION = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")


def _compiler_message(text: str) -> str:
    # "Failed to parse expression '...': ERROR: <input>:1:4: Syntax error: ...\n| 1 +\n| ...^"
    found = _PARSER_POSITION.search(text)
    if found is None:
        return text.strip().splitlines()[0] if text.strip() else "unknown error"
    line, column, problem = found.groups()
    where = f"character {column}" if line == "1" else f"line {line} character {column}"
    return f"at {where}: {problem.strip()}"


# A variable followed by field selections, stopping before a method call: `resource.task.labels` in
# `resource.task.labels.size()`. Used to hand CEL only the fields an expression can reach.
_FIELD_CHAIN = re.compile(r"(?<![\w.])(" + "|".join(VARIABLES) + r")\b((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*\b(?!\s*\())*)")

FieldTree = dict[str, Any]  # name -> FieldTree, or True for "the whole value"


@lru_cache(maxsize=1024)
def referenced_fields(expression: str) -> tuple[tuple[str, ...], ...]:
    """The field paths an expression selects, e.g. (('resource', 'task', 'priority'), ('subject', 'ai'))."""
    chains = []
    for root, rest in _FIELD_CHAIN.findall(expression):
        chains.append((root, *(part.strip() for part in rest.split(".") if part.strip())))
    return tuple(dict.fromkeys(chains))


def add_fields(tree: FieldTree, chain: tuple[str, ...]) -> None:
    """Add one path to a field tree; a shorter path (a whole value) absorbs longer ones."""
    node = tree
    for part in chain[:-1]:
        child = node.get(part)
        if child is True:
            return
        if child is None:
            child = node[part] = {}
        node = child
    node[chain[-1]] = True


def project(value: Any, tree: FieldTree | bool) -> Any:
    """Only the parts of `value` named in `tree`; missing keys stay missing so `has()` still works."""
    if not isinstance(tree, dict) or not isinstance(value, dict):
        return value
    return {key: project(value[key], sub) for key, sub in tree.items() if key in value}


def new_activation(variables: dict[str, Any]) -> Any:
    """The CEL context for one request. Python-to-CEL conversion costs several us per string, so
    callers pass only the projected fields, and build this once per request, not once per rule."""
    return _load_cel().Context(variables)


def run_condition(program: Any, activation: Any) -> tuple[bool, str | None]:
    """(result, error). Never raises: CEL errors and non-boolean results come back as an error text."""
    try:
        value = program.execute(activation)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - a Rust panic surfaces as pyo3 PanicException, a BaseException
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc!r}"
    if value is True or value is False:
        return value, None
    return False, f"condition returned {type(value).__name__} {value!r}, expected a bool"

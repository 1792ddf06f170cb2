"""Load YAML so that a syntax error names the file, line and column.

Every YAML file aictl reads goes through parse_yaml. A mapping that repeats a key
is an error (file:line of the repeat): PyYAML would silently keep the last one, so a
batch or policy could say one thing to its reviewer and another to aictl.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aictl.domain.errors import ConfigError


def parse_yaml(text: str, name: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        raise ConfigError(describe_yaml_error(e, name), hint=f"fix the YAML in {name}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: invalid YAML: {e}") from None


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    return parse_yaml(text, str(path))


def describe_yaml_error(e: Any, name: str) -> str:
    mark = e.problem_mark or e.context_mark
    where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
    msg = f"{where}: invalid YAML: {e.problem or e.context}"
    if e.context and e.context_mark and e.problem_mark and e.context_mark.line != e.problem_mark.line:
        msg += f" ({e.context} at line {e.context_mark.line + 1}, column {e.context_mark.column + 1})"
    return msg


_LOADER: Any = None


def _loader() -> Any:
    """SafeLoader (the C one when built) that refuses a repeated key in a mapping."""
    global _LOADER
    if _LOADER is None:
        import yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class NoDuplicates(base):  # type: ignore[misc, valid-type]
            def construct_mapping(self, node: Any, deep: bool = False) -> Any:
                seen: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges; its keys may be overridden
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.setdefault(key, key_node)
                    except TypeError:  # an unhashable key: PyYAML's own error says so below
                        continue
                    if first is not key_node:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping",
                            node.start_mark,
                            f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                            key_node.start_mark,
                        )
                return super().construct_mapping(node, deep=deep)

        _LOADER = NoDuplicates
    return _LOADER

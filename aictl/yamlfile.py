"""Load YAML so that a syntax error names the file, line and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aictl.domain.errors import ConfigError


def parse_yaml(text: str, name: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
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

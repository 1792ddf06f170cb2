"""How aictl's command parameters are converted and shown in help; imported once by cli/main.py.

Typer (0.2x) converts every parameter through a pydantic TypeAdapter built on first use:
importing pydantic and building the adapters cost ~0.15 s on each call, most of a hot
command's 0.2 s budget. aictl's parameters are plain str, int, float, bool, Path and lists
of those; this module converts those itself (with click's wording for a bad value) and
leaves anything else to Typer. tests/cli/test_startup.py fails if pydantic comes back.

Help: Typer shows types as `<bool>`, `<list[str]>`, `<int range> [x>=1]`; a normal CLI
shows `--limit INTEGER  ... [default: 500; at least 0]` and nothing after a flag.
Typer's internals moved between releases, so every hook checks the names it needs and
otherwise leaves Typer's own behaviour (slower, and uglier help, but correct).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from aictl.domain.limits import INT64_MAX, INT64_MIN

try:
    from typer import core as _core
    from typer._click.exceptions import BadParameter
    from typer._coercion import RuntimeParam
    from typer._param_types import coerce_cli_path
except ImportError:  # pragma: no cover - an older or newer Typer: keep its behaviour
    _core = None  # type: ignore[assignment]

# What a metavar says for each plain type, as click spells them.
_TYPE_NAMES = {str: "TEXT", int: "INTEGER", float: "NUMBER", bool: "BOOLEAN", Path: "PATH"}
_NUMBER_WORDS = {int: "integer", float: "number"}


def _to_str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "t", "yes", "y", "on"):
        return True
    if text in ("", "0", "false", "f", "no", "n", "off"):
        return False
    raise ValueError(f"{value!r} is not a valid boolean.")


def _number(kind: type, low: float | None, high: float | None) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{value!r} is not a valid {_NUMBER_WORDS[kind]}.")
        try:
            number = kind(value.strip() if isinstance(value, str) else value)
        except ValueError:
            raise ValueError(f"{value!r} is not a valid {_NUMBER_WORDS[kind]}.") from None
        if kind is float and not math.isfinite(number):
            # inf/nan pass every range check and then break whatever stores or compares them
            raise ValueError(f"{value!r}: must be a finite number{_range_suffix(low, high)}.")
        if (low is not None and number < low) or (high is not None and number > high):
            raise ValueError(f"{number}: must be {range_text(low, high)}.")
        if kind is int and not INT64_MIN <= number <= INT64_MAX:  # ids, epochs: the store's columns are 64-bit
            raise ValueError(f"{number}: must be {range_text(INT64_MIN, INT64_MAX)} (a 64-bit integer).")
        return number

    return convert


def _range_suffix(low: float | None, high: float | None) -> str:
    text = range_text(low, high)
    return f", {text}" if text else ""


def range_text(low: float | None, high: float | None) -> str | None:
    """A number's bounds in words: 'at least 1', 'at most 9', '1 to 9'."""
    if low is None and high is None:
        return None
    if high is None:
        return f"at least {low}"
    if low is None:
        return f"at most {high}"
    return f"{low} to {high}"


def _converter(annotation: Any, info: Any) -> Callable[[Any, Any, Any], Any] | None:
    """A converter (value, param, ctx) for a plain annotation, or None to leave it to Typer."""
    if info.parser is not None or getattr(info, "click_type", None) is not None:
        return None
    if annotation is str:
        return lambda v, p, c: _to_str(v)
    if annotation is bool:
        return lambda v, p, c: _to_bool(v)
    if annotation in (int, float):
        if getattr(info, "clamp", False):
            return None
        convert = _number(annotation, info.min, info.max)
        return lambda v, p, c: convert(v)
    if annotation is Path and getattr(info, "path_type", None) is None:
        return lambda v, p, c: coerce_cli_path(v, info, path_type=Path, param=p, ctx=c)
    return None


@dataclass(frozen=True)
class PlainParam(RuntimeParam):
    """Conversion of a plain parameter (or a list of them) without pydantic."""

    convert: Callable[[Any, Any, Any], Any]
    many: bool

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            if self.many:
                items = value if isinstance(value, (list, tuple)) else [value]
                return [self.convert(v, param, ctx) for v in items]
            return self.convert(value, param, ctx)
        except ValueError as e:
            raise BadParameter(str(e), ctx=ctx, param=param) from None


def plain_param(descriptor: Any) -> PlainParam | None:
    if descriptor.file_annotation is not None:
        return None
    annotation, info = descriptor.annotation, descriptor.parameter_info
    many = get_origin(annotation) is list
    if many:
        annotation = get_args(annotation)[0]
    convert = _converter(annotation, info)
    if convert is None:
        return None
    return PlainParam(annotation=descriptor.annotation, parameter_info=info, convert=convert, many=many)


def _get_runtime_param(self: Any) -> Any:
    if self._runtime_param is None:
        self._runtime_param = plain_param(self.type_descriptor) or _typer_runtime_param(self)
    return self._runtime_param


def _display_type(self: Any, ctx: Any) -> str:
    desc = self.type_descriptor
    if desc.is_choice:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices or ()) + "]"
    annotation = get_args(desc.annotation)[0] if desc.is_list else desc.annotation
    if desc.is_path or annotation is Path:
        return "PATH"
    return _TYPE_NAMES.get(annotation, "VALUE")


def _argument_name(self: Any) -> str:
    return self.metavar if self.metavar is not None else self.name.upper()


def _argument_usage(self: Any) -> str:
    name = _argument_name(self)
    name = name if self.required else f"[{name}]"
    return name + ("..." if self.nargs != 1 else "")


def _range_help(self: Any) -> str | None:
    if getattr(self, "count", False):
        return None
    return range_text(self.min, self.max)


def install() -> None:
    """Hook the conversion and the help text into Typer (idempotent)."""
    global _typer_runtime_param
    param_cls = getattr(_core, "_TyperParameter", None) if _core is not None else None
    if param_cls is None or getattr(param_cls, "_aictl_plain", False):
        return
    if hasattr(param_cls, "get_runtime_param"):
        _typer_runtime_param = param_cls.get_runtime_param
        param_cls.get_runtime_param = _get_runtime_param
    if hasattr(param_cls, "display_type"):
        param_cls.display_type = _display_type
    for cls_name in ("TyperOption", "TyperArgument"):
        cls = getattr(_core, cls_name, None)
        if cls is not None and hasattr(cls, "_get_number_range_help_str"):
            cls._get_number_range_help_str = _range_help
    argument_cls = getattr(_core, "TyperArgument", None)
    if argument_cls is not None and hasattr(argument_cls, "_usage_display_name"):
        # Arguments read as in click: `aictl task get TASK_ID`, not `{task_id}` followed by a type
        argument_cls.display_name_raw = property(_argument_name)
        argument_cls._usage_display_name = _argument_usage
        argument_cls.display_type_rich = lambda self, ctx: None
    param_cls._aictl_plain = True


_typer_runtime_param: Callable[[Any], Any]

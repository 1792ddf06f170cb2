"""Semantic versions and requirement strings ("python-tests>=1.2,<2"), checked without the `packaging` library.

A version is MAJOR.MINOR.PATCH (a pre-release or build suffix is kept for display and ignored for ordering);
a range is a comma-separated list of clauses with ==, !=, >=, <=, >, <, ~= (compatible release) or ^ (same major).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+][0-9A-Za-z.+-]*)?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_CLAUSE = re.compile(r"^(==|!=|>=|<=|~=|>|<|\^)\s*(\S+)$")
_REQUIREMENT = re.compile(r"^\s*([a-z0-9][a-z0-9-]*)\s*(.*?)\s*$")


def parse_version(text: str, *, full: bool = True) -> tuple[int, int, int]:
    """(major, minor, patch); with `full`, all three parts are required (a skill's own version)."""
    m = _VERSION.match(str(text).strip())
    if m is None or (full and m.group(3) is None):
        raise ValueError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.0)")
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


@dataclass(frozen=True)
class Requirement:
    """One entry of `requires`: a skill name and the versions of it that will do."""

    name: str
    clauses: tuple[tuple[str, tuple[int, int, int], int], ...]  # (operator, version, parts given)
    text: str

    def allows(self, version: str) -> bool:
        v = parse_version(version, full=False)
        return all(_holds(op, v, bound, parts) for op, bound, parts in self.clauses)

    def __str__(self) -> str:
        return self.text


def _holds(op: str, v: tuple[int, int, int], bound: tuple[int, int, int], parts: int) -> bool:
    if op == "==":
        return v[:parts] == bound[:parts]
    if op == "!=":
        return v[:parts] != bound[:parts]
    if op == ">=":
        return v >= bound
    if op == "<=":
        return v <= bound
    if op == ">":
        return v > bound
    if op == "<":
        return v < bound
    if op == "~=":  # ~=1.2 means >=1.2,<2; ~=1.2.3 means >=1.2.3,<1.3
        return v >= bound and v[: max(parts - 1, 1)] == bound[: max(parts - 1, 1)]
    return v >= bound and v[0] == bound[0]  # ^


def parse_requirement(text: str) -> Requirement:
    """'name', 'name>=1.2,<2', 'name==1.0.0'; raises ValueError naming what is wrong."""
    m = _REQUIREMENT.match(str(text))
    if m is None or not valid_name(m.group(1)):
        raise ValueError(f"{text!r}: a requirement is a skill name (lowercase, digits, '-') and an optional range")
    clauses = []
    rest = m.group(2)
    for raw in filter(None, (c.strip() for c in rest.split(","))) if rest else ():
        c = _CLAUSE.match(raw)
        if c is None:
            raise ValueError(f"{text!r}: {raw!r} is not a version clause (use ==, !=, >=, <=, >, <, ~= or ^)")
        bound = c.group(2)
        try:
            version = parse_version(bound, full=False)
        except ValueError:
            raise ValueError(f"{text!r}: {bound!r} is not a version") from None
        clauses.append((c.group(1), version, bound.split("+")[0].split("-")[0].count(".") + 1))
    return Requirement(m.group(1), tuple(clauses), str(text).strip())


__all__ = ["Requirement", "parse_requirement", "parse_version", "valid_name"]

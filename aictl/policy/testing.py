"""Table-driven policy tests, like `opa test`.

A test file `<name>_test.yaml` (or a `tests:` list inside a policy file) holds cases::

    policy: protect-secrets.yaml        # optional; default: the sibling <name>.yaml
    tests:
      - name: writing .env is denied
        input: {subject: {ai: claude-code}, action: write_path, resource: {path: .env}}
        expect: {effect: deny, rules: [protect-secrets]}

`run_policy_tests(path)` runs every case under a directory (or in one file) and reports
each one with the expected and actual values that differ.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from aictl.domain.errors import AictlError
from aictl.policy.engine import Decision, PolicyRequest, evaluate
from aictl.policy.loader import PolicyIssue, find_node, issues_error, load_model_file, load_policy_file
from aictl.policy.merge import EffectivePolicy, load_overlays, merge_policies
from aictl.policy.schema import PolicyFile, PolicyTestCase, PolicyTestFile

_HAS_TESTS = re.compile(r"^tests\s*:", re.MULTILINE)


class CaseResult(BaseModel):
    file: str
    line: int | None = None
    name: str
    passed: bool
    error: str | None = Field(None, description="why the case could not run (bad input, policy failed to load)")
    diff: dict[str, dict[str, Any]] = Field(default_factory=dict, description="field -> {expected, actual}")
    decision: Decision | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.passed:
            return f"PASS {where}: {self.name}"
        if self.error:
            return f"ERROR {where}: {self.name}: {self.error}"
        details = "; ".join(
            f"{field}: expected {d['expected']!r}, got {d['actual']!r}" for field, d in self.diff.items()
        )
        return f"FAIL {where}: {self.name}: {details}"


class TestReport(BaseModel):
    __test__ = False  # not a pytest class

    files: list[str] = Field(default_factory=list)
    cases: list[CaseResult] = Field(default_factory=list)
    issues: list[PolicyIssue] = Field(default_factory=list, description="test files that could not be read")

    @property
    def passed(self) -> int:
        return sum(case.passed for case in self.cases)

    @property
    def failed(self) -> int:
        return len(self.cases) - self.passed

    @property
    def ok(self) -> bool:
        return not self.issues and self.failed == 0 and bool(self.cases)

    def summary(self) -> str:
        lines = [str(issue) for issue in self.issues]
        lines += [str(case) for case in self.cases if not case.passed]
        lines.append(
            f"{self.passed} passed, {self.failed} failed, {len(self.issues)} file error(s) in {len(self.files)} file(s)"
        )
        return "\n".join(lines)


def run_policy_tests(path: str | Path) -> TestReport:
    """Run every `*_test.yaml` under `path` (a directory, recursively) and every policy file with `tests:`;
    or the cases of one file when `path` is a file."""
    path = Path(path)
    report = TestReport()
    policies: dict[tuple[str, ...], EffectivePolicy | str] = {}
    for test_file in _test_files(path):
        report.files.append(str(test_file))
        _run_file(test_file, report, policies)
    if not report.files:
        report.issues.append(PolicyIssue(file=str(path), message="no *_test.yaml file and no policy with tests: found"))
    return report


def _test_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    found = []
    for candidate in sorted(path.rglob("*.y*ml")):
        if candidate.name.endswith(("_test.yaml", "_test.yml")) or _HAS_TESTS.search(
            candidate.read_text(encoding="utf-8", errors="replace")
        ):
            found.append(candidate)
    return found


def _run_file(test_file: Path, report: TestReport, policies: dict[tuple[str, ...], EffectivePolicy | str]) -> None:
    is_test_file = test_file.name.endswith(("_test.yaml", "_test.yml"))
    if is_test_file:
        parsed, issues = load_model_file(test_file, PolicyTestFile)
        cases = parsed.tests if parsed else []
        default_policy: str | list[str] | None = parsed.policy if parsed else None
    else:
        policy_file, issues = load_model_file(test_file, PolicyFile)
        cases = (policy_file.tests or []) if policy_file else []
        default_policy = test_file.name
    if issues:
        report.issues.extend(issues)
        return
    lines = _case_lines(test_file, len(cases))
    for index, case in enumerate(cases):
        report.cases.append(_run_case(test_file, lines[index], case, default_policy, policies))


def _case_lines(test_file: Path, count: int) -> list[int | None]:
    try:
        root = yaml.compose(test_file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return [None] * count
    return [find_node(root, ("tests", i))[0].start_mark.line + 1 for i in range(count)] if root else [None] * count


def _policy_paths(test_file: Path, case: PolicyTestCase, default: str | list[str] | None) -> list[Path]:
    chosen = case.policy if case.policy is not None else default
    if chosen is None:
        stem = test_file.name.rsplit("_test.", 1)[0]
        return [test_file.with_name(f"{stem}.yaml")]
    names = [chosen] if isinstance(chosen, str) else chosen
    return [(test_file.parent / name) for name in names]


def _load_policy(paths: list[Path], cache: dict[tuple[str, ...], EffectivePolicy | str]) -> EffectivePolicy | str:
    key = tuple(str(p) for p in paths)
    if key not in cache:
        try:
            missing = [p for p in paths if not p.is_file()]
            if missing:
                cache[key] = f"policy file {missing[0]} does not exist (give 'policy:' in the test file)"
            else:
                # A file in a policies/workflows/ folder is a workflow overlay, as in .ai/policies/workflows/.
                overlay = [p for p in paths if p.parent.name == "workflows" and p.parent.parent.name == "policies"]
                issues: list[PolicyIssue] = []
                overlays = load_overlays(overlay, issues)
                if issues:
                    raise issues_error(str(overlay[0]), issues, what="workflow overlay")
                files = [load_policy_file(p) for p in paths if p not in overlay]
                cache[key] = merge_policies(files, overlays=overlays)
        except AictlError as exc:
            cache[key] = exc.message
    return cache[key]


def _run_case(
    test_file: Path,
    line: int | None,
    case: PolicyTestCase,
    default: str | list[str] | None,
    cache: dict[tuple[str, ...], EffectivePolicy | str],
) -> CaseResult:
    result = CaseResult(file=str(test_file), line=line, name=case.name, passed=False)
    policy = _load_policy(_policy_paths(test_file, case, default), cache)
    if isinstance(policy, str):
        result.error = policy
        return result
    try:
        request = PolicyRequest.model_validate(case.input)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        result.error = f"invalid input: {problems}"
        return result
    decision = evaluate(policy, request)
    result.decision = decision
    result.diff = _diff(case, decision)
    result.passed = not result.diff
    return result


def _diff(case: PolicyTestCase, decision: Decision) -> dict[str, dict[str, Any]]:
    expect = case.expect
    diff: dict[str, dict[str, Any]] = {}
    if expect.effect.value != decision.effect:
        diff["effect"] = {"expected": expect.effect.value, "actual": decision.effect}
    if expect.rules is not None and sorted(set(expect.rules)) != sorted(set(decision.matched_rules)):
        diff["rules"] = {"expected": sorted(set(expect.rules)), "actual": sorted(set(decision.matched_rules))}
    if expect.default_applied is not None and expect.default_applied != decision.default_applied:
        diff["default_applied"] = {"expected": expect.default_applied, "actual": decision.default_applied}
    if expect.limits is not None:
        actual = decision.limits.model_dump(mode="json")
        for key, value in expect.limits.items():
            if not _contains(actual.get(key, "<no such limit>"), value):
                diff[f"limits.{key}"] = {"expected": value, "actual": actual.get(key, "<no such limit>")}
    return diff


def _contains(actual: Any, expected: Any) -> bool:
    """Equal, except that an expected mapping only needs to match the keys it names."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(_contains(actual.get(k, "<missing>"), v) for k, v in expected.items())
    return actual == expected

"""Every example under policies/ loads, has a test file, and its cases pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from aictl.policy import load_policy_file, merge_policies, run_policy_tests

POLICIES = Path(__file__).resolve().parents[2] / "policies"
EXAMPLES = sorted(p for p in POLICIES.glob("*.yaml") if not p.name.endswith("_test.yaml"))


def test_there_are_examples():
    names = {p.stem for p in EXAMPLES}
    assert {
        "default",
        "protect-secrets",
        "protect-ci",
        "migrations-need-approval",
        "per-ai-scopes",
        "budget-caps",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads_and_has_passing_cases(path):
    merge_policies([load_policy_file(path)])
    test_file = path.with_name(f"{path.stem}_test.yaml")
    assert test_file.is_file(), f"{path.name} has no {test_file.name}"
    report = run_policy_tests(test_file)
    assert report.ok, report.summary()
    assert report.passed >= 5, "an example policy deserves at least five cases"


def test_the_whole_directory_passes():
    report = run_policy_tests(POLICIES)
    assert report.ok, report.summary()


def test_the_policy_that_aictl_init_writes_is_valid():
    template = Path(__file__).resolve().parents[2] / "aictl" / "templates" / "policy.yaml"
    if not template.is_file():
        pytest.skip("no policy template in this checkout")
    merge_policies([load_policy_file(template)])

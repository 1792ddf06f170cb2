"""`aictl sandbox doctor` against the real engine and the agents image: it reports what it found by trying."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.docker


def test_doctor_reports_the_user_the_cli_versions_and_working_egress(agents_image, cli):
    code, out, err = cli("sandbox", "doctor", "--image", agents_image, "-o", "json")
    report = json.loads(out)
    assert code == 0 and report["ok"], err
    inside = report["inside"]
    assert inside["user"] != "root" and inside["uid"] != "0"
    assert inside["claude-code"] == report["versions"]["claude-code"]
    assert inside["codex"] == report["versions"]["codex"]
    assert inside["git"] and inside["python"].startswith("3.") and inside["node"].startswith("v")
    egress = report["egress"]
    assert (egress["allowed"], egress["forbidden"], egress["around"]) == ("204", "403", "000")
    assert egress["recorded"] == 2 and egress["network"] == "egress-proxy"
    assert report["up_to_date"] is True


def test_doctor_without_the_image_fails_with_the_build_command(docker_engine, cli):
    code, out, _ = cli("sandbox", "doctor", "--image", "aictl-agents:never-built", "-o", "json")
    report = json.loads(out)
    assert code == 1 and not report["ok"] and "--preset agents" in report["hint"]

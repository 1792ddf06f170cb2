"""What the pinned policy takes away from the agent's sandbox before it starts: network and readable secrets."""

from __future__ import annotations

import pytest

from aictl.execution import containment
from aictl.execution.containment import WorkspaceTooLarge, contain, denied_reads, read_denied_by
from aictl.sandbox.base import SandboxSpec
from tests.agents.canary import Pinned, seed_workspace


@pytest.fixture
def ws(tmp_path):
    path = tmp_path / "ws"
    path.mkdir()
    seed_workspace(path)
    (path / "deploy.pem").write_text("pem\n")
    (path / "src" / "app.py").write_text("x\n")
    (path / "src" / "nested" / "keys").mkdir(parents=True)
    (path / "src" / "nested" / "keys" / "id_rsa").write_text("key\n")
    (path / "src" / "link.pem").symlink_to(path / "src" / "app.py")  # a link is not masked: its target is judged
    (path / ".env.example").write_text("A=\n")  # the policy's own exception
    return path


@pytest.fixture
def pinned(tmp_path, ws):
    p = Pinned(tmp_path, ws)
    yield p
    p.close()


def test_the_files_the_policy_denies_reading_are_found_without_a_record_each(pinned, ws):
    found = denied_reads(ws, read_denied_by(pinned.run))
    assert found == ["deploy.pem", "secrets/token.txt", "src/nested/keys/id_rsa"]
    assert pinned.decisions() == []  # the walk is no agent action


def test_docker_gets_the_masks_and_a_network_deny_beats_config(pinned, ws):
    spec = contain(SandboxSpec(backend="docker", network=True), ws, pinned.run)
    assert spec.network is False and spec.masked_paths == ["deploy.pem", "secrets/token.txt", "src/nested/keys/id_rsa"]
    assert [(d["action"], d["effect"], d["matched_rules"]) for d in pinned.decisions()] == [
        ("network", "deny", ["no-network"])
    ]


def test_a_network_allow_keeps_it_and_no_network_asked_is_no_decision(tmp_path, ws):
    allowing = Pinned(
        tmp_path,
        ws,
        policy="version: 1\ndefault: deny\nrules:\n  - {id: net, effect: allow, match: {actions: [network]}}\n",
    )
    try:
        assert contain(SandboxSpec(network=True), ws, allowing.run).network is True
        assert contain(SandboxSpec(network=False), ws, allowing.run).network is False
        assert [d["action"] for d in allowing.decisions()] == ["network"]  # asked only when config wants it
        local = contain(SandboxSpec(backend="local"), ws, allowing.run)
        assert local.masked_paths == []  # the local backend has nothing to mount: the hooks and tools decide
    finally:
        allowing.close()


def test_a_workspace_too_big_to_walk_fails_closed(pinned, ws, monkeypatch):
    monkeypatch.setattr(containment, "MAX_WALK", 5)
    with pytest.raises(WorkspaceTooLarge, match="too many to find"):
        contain(SandboxSpec(backend="docker"), ws, pinned.run)
    monkeypatch.setattr(containment, "MAX_WALK", 10_000)
    monkeypatch.setattr(containment, "MAX_MASKED", 2)
    with pytest.raises(WorkspaceTooLarge, match="over the 2"):
        contain(SandboxSpec(backend="docker"), ws, pinned.run)

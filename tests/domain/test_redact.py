"""Secrets never reach the audit log, task results or evidence."""

from __future__ import annotations

import json

from aictl.domain import redact as redact_mod
from aictl.domain.redact import MASK, redact, redact_text
from aictl.tasks.service import TaskSpec

SECRETS = [
    "sk-ant-api03-Zx9_abcdefghijklmnopqrstu",
    "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
    "ghp_" + "A1b2" * 9,
    "AKIAIOSFODNN7EXAMPLE",
    "xoxb-1234567890-abcdefghij",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    "password=hunter2hunter2",
]


def test_builtin_formats_are_masked():
    for secret in SECRETS:
        out = redact_text(f"before {secret} after")
        assert MASK in out and "before" in out and "after" in out, secret
        assert secret not in out


def test_env_values_and_configured_patterns(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "plainvalue-123456")
    redact_mod.refresh()
    assert redact_text("x plainvalue-123456 y") == f"x {MASK} y"
    redact_mod.configure([r"corp-[0-9]{6}"])
    try:
        assert redact({"a": ["id corp-123456"]}) == {"a": [f"id {MASK}"]}
    finally:
        redact_mod.configure([])
    assert redact_text("ordinary text, version 1.2.3") == "ordinary text, version 1.2.3"


def test_events_and_results_are_redacted(services):
    b = services
    key = SECRETS[0]
    t = b.svc.create(TaskSpec(title=f"rotate {key}"))
    r = b.svc.claim("w")
    b.svc.complete(t.id, "w", r.lease.lease_epoch, result={"log": f"used {key}"})
    t2 = b.svc.create(TaskSpec(title="t2"))
    r2 = b.svc.claim("w")
    b.svc.fail(t2.id, "w", r2.lease.lease_epoch, reason=f"401 for {SECRETS[1]}")
    with b.store.read() as tx:
        dump = json.dumps(tx.all("SELECT * FROM events")) + json.dumps(tx.all("SELECT result FROM tasks"))
    for secret in SECRETS[:2]:
        assert secret not in dump
    assert MASK in dump

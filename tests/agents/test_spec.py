"""Connector specs: found through the aictl.connectors entry points (built-ins and third parties alike), loaded
without the model SDKs, and the one place for base URLs, key variables and the status → error kind rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from aictl.agents.connectors import get_connector, known_connectors, spec_for, specs
from aictl.agents.connectors.apicommon import http_error
from aictl.agents.connectors.claude_code import ClaudeStream
from aictl.agents.connectors.cli_common import kind_from_text
from aictl.agents.connectors.spec import ENTRY_POINT_GROUP, TRANSIENT_KINDS, ConnectorSpec, status_error_kind
from aictl.domain.errors import UsageError
from aictl.domain.models import AIRecord
from tests.conftest import run_cli

BUILTINS = {"anthropic", "claude-code", "codex", "command", "ollama", "openai"}
REPO = Path(__file__).resolve().parents[2]


def test_every_builtin_is_registered_through_the_entry_point_group():
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert set(found) >= BUILTINS
    for name in BUILTINS:
        spec = found[name].load()
        assert isinstance(spec, ConnectorSpec) and spec.name == name and spec_for(name) is spec
        assert get_connector(name).name == name
    assert set(known_connectors()) >= BUILTINS
    with pytest.raises(UsageError) as e:
        spec_for("gemini")
    assert "claude-code" in (e.value.hint or "")


def test_loading_every_spec_imports_no_sdk():
    code = (
        "import sys, aictl.agents.connectors as c\n"
        "for s in c.specs():\n"
        "    (s.name, s.kind, s.binary, s.sdk_module, s.base_url(None), s.key_env(None), s.defaults, s.probe,\n"
        "     s.prices, s.factory, s.config_types, s.config_choices, s.secret_env_keys, s.error_kind(500))\n"
        "print(len(c.specs()), sorted(m for m in ('anthropic', 'openai', 'ollama', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split(" ", 1) == [str(len(specs())), "[]\n"]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 429, 500, 502, 503, 504, 529])
def test_one_status_rule_for_the_sdks_and_the_clis(status):
    kind = status_error_kind(status)
    api = http_error(status, connector="anthropic", base_url="http://h", key_env="K")
    assert api.kind == kind
    assert api.retryable == (kind in TRANSIENT_KINDS or status == 409)
    if kind != "other":  # a CLI quoting the status in its message
        assert kind_from_text(f"API Error: {status} something went wrong") == kind
    parser = ClaudeStream()
    parser.feed(
        json.dumps(
            {
                "type": "result",
                "subtype": "success",
                "is_error": True,
                "api_error_status": status,
                "result": "API Error",
                "num_turns": 1,
            }
        )
    )
    assert parser.error_kind == kind


def test_a_5xx_is_overloaded_and_transient():
    for status in (500, 502, 503, 504, 529):
        assert status_error_kind(status) == "overloaded" and "overloaded" in TRANSIENT_KINDS
    assert status_error_kind(429) == "rate_limit" and status_error_kind(401) == "auth"
    assert status_error_kind(400) == "other" and status_error_kind(None) is None


@pytest.mark.parametrize(
    "connector, configured, expected",
    [
        ("anthropic", None, "https://api.anthropic.com"),
        ("anthropic", "http://h:1/v1/", "http://h:1"),  # the SDK adds /v1
        ("openai", None, "https://api.openai.com/v1"),
        ("openai", "http://h:1", "http://h:1/v1"),  # a bare host gets /v1
        ("openai", "https://gw.example/v1beta/openai/", "https://gw.example/v1beta/openai"),  # a path is kept
        ("codex", "http://h:1", "http://h:1/v1"),
        ("codex", "http://h:1/v1/", "http://h:1/v1"),
        ("ollama", None, "http://127.0.0.1:11434"),
        ("ollama", "http://h:1/api", "http://h:1"),
        ("claude-code", None, None),  # the CLI's own default
        ("claude-code", "http://h:1/v1", "http://h:1"),
        ("command", None, None),
    ],
)
def test_base_url_is_resolved_once_by_the_spec(connector, configured, expected):
    ai = AIRecord(id="a", connector=connector, config={"base_url": configured} if configured else {})
    assert spec_for(connector).base_url(ai) == expected


def test_key_variable_default_override_and_problem(monkeypatch):
    spec = spec_for("openai")
    monkeypatch.delenv("MY_KEY", raising=False)
    ai = AIRecord(id="a", connector="openai", config={"api_key_env": "MY_KEY"})
    assert spec.key_env(None) == "OPENAI_API_KEY" and spec.key_env(ai) == "MY_KEY"
    assert spec.key_problem(ai) == "API key variable MY_KEY is not set" and spec.api_key(ai) == ("MY_KEY", None)
    monkeypatch.setenv("MY_KEY", "sk-x")
    assert spec.api_key(ai) == ("MY_KEY", "sk-x") and spec.key_problem(ai) is None and spec.secrets(ai) == ["sk-x"]
    assert spec_for("ollama").key_env(None) is None and spec_for("command").key_problem(None) is None


PLUGIN = """
from aictl.agents.connectors.base import ConnectorResult
from aictl.agents.connectors.spec import ConnectorSpec


class Echo:
    name = "thirdparty"

    def run(self, ctx):
        return ConnectorResult(ok=True, summary="echo")


def probe(ai, spec, timeout):
    return {"ok": True, "detail": f"thirdparty probe for {ai.id} at {spec.base_url(ai)}"}


SPEC = ConnectorSpec(name="thirdparty", kind="sdk", factory=Echo, default_key_env="THIRDPARTY_KEY",
                     default_base_url="http://thirdparty.invalid", config_types={"flavour": (str,)}, probe=probe)
"""


@pytest.fixture
def plugin_path(tmp_path) -> str:
    """A third-party connector as pip installs one: a package and a dist-info naming it in aictl.connectors."""
    site = tmp_path / "site"
    (site / "thirdparty_conn").mkdir(parents=True)
    (site / "thirdparty_conn" / "__init__.py").write_text(PLUGIN)
    info = site / "thirdparty_conn-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-conn\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nthirdparty = thirdparty_conn:SPEC\n")
    return str(site)


def test_a_third_party_connector_registers_like_a_builtin(project, plugin_path):
    env = {"PYTHONPATH": os.pathsep.join([plugin_path, str(REPO)]), "THIRDPARTY_KEY": ""}
    res = run_cli(
        "ai",
        "register",
        "x",
        "--connector",
        "thirdparty",
        "--config",
        "flavour=mint",
        "-o",
        "json",
        cwd=project,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["connector"] == "thirdparty"
    bad = run_cli("ai", "register", "y", "--connector", "thirdparty", "--config", "flavour=3", cwd=project, env=env)
    assert bad.returncode == 2 and "'flavour' must be a string" in bad.stderr  # the spec's config types
    status = run_cli("ai", "status", "x", "-o", "json", cwd=project, env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)[0]["health"]["detail"] == "thirdparty probe for x at http://thirdparty.invalid"
    task = json.loads(run_cli("task", "create", "t", "-o", "json", cwd=project, env=env).stdout)["id"]
    route = run_cli("route", str(task), "-o", "json", cwd=project, env=env)  # the router's quick check reads the spec
    assert json.loads(route.stdout)["candidates"][0]["reasons"] == ["API key variable THIRDPARTY_KEY is not set"]
    # Without the plugin installed the connector is unknown, and the check says so instead of crashing.
    gone = run_cli("ai", "status", "x", "-o", "json", cwd=project, env={"PYTHONPATH": str(REPO)})
    assert gone.returncode == 1 and "unknown connector 'thirdparty'" in gone.stdout


def test_the_registry_checks_config_against_the_spec():
    from aictl.agents.registry import validate_config

    assert validate_config("openai", {"api": "responses", "temperature": 0.2})
    with pytest.raises(UsageError, match="'api' of the openai connector must be chat or responses"):
        validate_config("openai", {"api": "completions"})
    with pytest.raises(UsageError, match="codex_sandbox"):
        validate_config("codex", {"codex_sandbox": "off"})
    with pytest.raises(UsageError, match="'temperature' must be"):
        validate_config("anthropic", {"temperature": "hot"})
    assert validate_config("command", {"temperature": "hot"})  # not a key the command connector knows
    assert spec_for("openai").config(AIRecord(id="a", connector="openai", config={}))["api"] == "chat"


def test_quick_check_finds_a_missing_sdk_without_importing_it(monkeypatch):
    from aictl.agents.connectors import register
    from aictl.agents.connectors.spec import SPECS
    from aictl.agents.health import quick_check

    register(ConnectorSpec(name="nosdk", kind="sdk", factory=dict, sdk_module="aictl_no_such_sdk"))
    try:
        assert quick_check(AIRecord(id="n", connector="nosdk")) == [
            "the aictl_no_such_sdk package is not installed (pip install aictl_no_such_sdk)"
        ]
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        assert quick_check(AIRecord(id="a", connector="anthropic", model="m")) == []
    finally:
        SPECS.added.pop("nosdk")
